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

{{- define "kubernaut-executor.auditCA" -}}
{{ include "kubernaut-executor.fullname" . }}-audit-ca
{{- end }}

{{/*
Fails on contradictory audit values: credentials without a URL, or with a plain HTTP one (the
manager refuses to send them over HTTP too), and a CA bundle with no PEM certificate.
*/}}
{{- define "kubernaut-executor.checkAudit" -}}
{{- $audit := .Values.audit }}
{{- $credentials := list }}
{{- if $audit.caBundle }}{{ $credentials = append $credentials "audit.caBundle" }}{{ end }}
{{- if $audit.tokenSecret }}{{ $credentials = append $credentials "audit.tokenSecret" }}{{ end }}
{{- if $audit.clientCertSecret }}{{ $credentials = append $credentials "audit.clientCertSecret" }}{{ end }}
{{- if and $credentials (not $audit.url) }}
{{- fail (printf "%s: only used with audit.url, which is empty; set it to the storage service's https:// URL" (join ", " $credentials)) }}
{{- end }}
{{- if and $credentials (hasPrefix "http://" $audit.url) }}
{{- fail (printf "audit.url %q is plain HTTP, and the manager sends no credentials over plain HTTP: use an https:// URL, or leave out %s" $audit.url (join ", " $credentials)) }}
{{- end }}
{{- if and $audit.caBundle (not (contains "-----BEGIN CERTIFICATE-----" $audit.caBundle)) }}
{{- fail "audit.caBundle holds no PEM certificate (-----BEGIN CERTIFICATE-----)" }}
{{- end }}
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

{{/*
The enabled predefined actions, as a JSON list of names (read it with fromJsonArray): every
ActionTemplate in files/actiontemplates (the repository's templates/, the one source), named by
its file, unless .Values.actions says <name>: false. A name in .Values.actions with no template
fails, and so does a template whose metadata.name differs from its file's name.
*/}}
{{- define "kubernaut-executor.actions" -}}
{{- $values := .Values.actions | default dict }}
{{- $shipped := dict }}
{{- range $path, $_ := .Files.Glob "files/actiontemplates/*.yaml" }}
{{- $name := base $path | trimSuffix ".yaml" }}
{{- $tpl := fromYaml ($.Files.Get $path) }}
{{- if ne $name (dig "metadata" "name" "" $tpl) }}
{{- fail (printf "%s holds the ActionTemplate %q: a predefined action's file must be named after it" $path (dig "metadata" "name" "" $tpl)) }}
{{- end }}
{{- $_ := set $shipped $name true }}
{{- end }}
{{- range $name, $_ := $values }}
{{- if not (hasKey $shipped $name) }}
{{- fail (printf "actions.%s: no predefined action has that name (there are: %s)" $name (keys $shipped | sortAlpha | join ", ")) }}
{{- end }}
{{- end }}
{{- $enabled := list }}
{{- range $name := keys $shipped | sortAlpha }}
{{- if or (not (hasKey $values $name)) (index $values $name) }}
{{- $enabled = append $enabled $name }}
{{- end }}
{{- end }}
{{- toJson $enabled }}
{{- end }}
