{{/* The chart's name. */}}
{{- define "kubernaut-executor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object's name. */}}
{{- define "kubernaut-executor.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "kubernaut-executor.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "kubernaut-executor.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels on every object. part-of lets the manager's cache see the ceiling and its fragments. */}}
{{- define "kubernaut-executor.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "kubernaut-executor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubernaut-executor
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The manager's selector. */}}
{{- define "kubernaut-executor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubernaut-executor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: manager
{{- end }}

{{- define "kubernaut-executor.serviceAccountName" -}}
{{ include "kubernaut-executor.fullname" . }}
{{- end }}

{{- define "kubernaut-executor.webhookService" -}}
{{ include "kubernaut-executor.fullname" . }}-webhook
{{- end }}

{{- define "kubernaut-executor.webhookSecret" -}}
{{ include "kubernaut-executor.fullname" . }}-webhook-tls
{{- end }}

{{/* The ceiling ClusterRole; its name is fixed so templates and manager agree on it. */}}
{{- define "kubernaut-executor.ceiling" -}}
kubernaut-executor-ceiling
{{- end }}

{{- define "kubernaut-executor.managerImage" -}}
{{ .Values.manager.image.repository }}:{{ default .Chart.AppVersion .Values.manager.image.tag }}
{{- end }}

{{- define "kubernaut-executor.actionImage" -}}
{{ .Values.executor.actionImage.repository }}:{{ default .Chart.AppVersion .Values.executor.actionImage.tag }}
{{- end }}

{{/* The ConfigMap of a predefined action; called with (list $ <action name>). */}}
{{- define "kubernaut-executor.actionConfigMap" -}}
{{ include "kubernaut-executor.fullname" (index . 0) }}-action-{{ index . 1 }}
{{- end }}
