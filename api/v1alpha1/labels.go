package v1alpha1

// Labels the executor puts on the objects it creates: an attempt's Job and pods, and the
// ServiceAccount and RBAC objects of an execution's grant.
const (
	// LabelExecution names the KubernetesExecution an object belongs to, shortened with a hash
	// when the name is longer than a label value may be.
	LabelExecution = "kubernaut.io/execution"
	// LabelExecutionNamespace is the namespace of the KubernetesExecution a grant is for.
	LabelExecutionNamespace = "kubernaut.io/execution-namespace"
	// LabelExecutionUID is the UID of the KubernetesExecution a grant is for.
	LabelExecutionUID = "kubernaut.io/execution-uid"
	// LabelActionType names the action's ActionTemplate.
	LabelActionType = "kubernaut.io/action-type"
	// LabelAttempt is the attempt's number, from 1.
	LabelAttempt = "kubernaut.io/attempt"
)

// Labels that mark the objects of an installation of the executor.
const (
	// LabelManagedBy marks the objects the executor manages; its value is ManagedByValue.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy on the objects the executor manages.
	ManagedByValue = "kubernaut-executor"
	// LabelPartOf marks every object of the executor's installation, created by the executor or
	// for it (the RBAC ceiling and its fragments); its value is PartOfValue.
	LabelPartOf = "app.kubernetes.io/part-of"
	// PartOfValue is the value of LabelPartOf.
	PartOfValue = "kubernaut-executor"
	// LabelInstance names the Helm release an object was installed by.
	LabelInstance = "app.kubernetes.io/instance"
	// LabelAggregateToCeiling, set to "true", marks the ClusterRoles that aggregate into the RBAC
	// ceiling: the fragments that bound the rules a template may ask for.
	LabelAggregateToCeiling = "kubernaut.io/aggregate-to-ceiling"
)

// Labels, annotations and data keys of the predefined actions a Helm release installs.
const (
	// LabelPredefinedAction names a predefined action. On a ConfigMap in the manager's namespace
	// it marks the ConfigMap as the source of that action's ActionTemplate; on an ActionTemplate
	// it marks a template the manager created from such a ConfigMap; on a ceiling fragment it
	// names the action whose rules the fragment carries.
	LabelPredefinedAction = "kubernaut.io/predefined-action"
	// AnnotationPredefinedSource, on an ActionTemplate the manager created, names the ConfigMap
	// it was created from, as <namespace>/<name>.
	AnnotationPredefinedSource = "kubernaut.io/predefined-source"
	// AnnotationOnBehalfOf, on an execution, names the user it is created for (an upstream
	// controller acting for a person). The webhook accepts it only when the creator may
	// impersonate that user (and the groups of AnnotationOnBehalfOfGroups); the named user is
	// then the requester whose rights bound the execution, and the creator is recorded as
	// spec.admission.createdBy.
	AnnotationOnBehalfOf = "kubernaut.io/on-behalf-of"
	// AnnotationOnBehalfOfGroups lists the groups of the user named by AnnotationOnBehalfOf,
	// separated by commas.
	AnnotationOnBehalfOfGroups = "kubernaut.io/on-behalf-of-groups"
	// PredefinedTemplateKey is the data key of a predefined action's ConfigMap that holds the
	// ActionTemplate, as YAML.
	PredefinedTemplateKey = "actiontemplate.yaml"
)

// Finalizers the executor puts on the objects it reconciles.
const (
	// GrantFinalizer keeps a KubernetesExecution until the RBAC grant made for it is revoked.
	GrantFinalizer = "kubernaut.io/revoke-grant"
)

// Target clusters (multi-cluster execution).
const (
	// AnnotationExecutionName is the whole name of the execution a Job (and its pod) in a target
	// cluster belongs to, in the Job's namespace: no owner reference can cross clusters, and a
	// label may have to shorten the name.
	AnnotationExecutionName = "kubernaut.io/execution-name"
	// LabelCluster marks a Secret in the manager's namespace as a target cluster's credentials:
	// "true" registers it.
	LabelCluster = "kubernaut.io/cluster"
	// AnnotationClusterName names the cluster its Secret registers; the Secret's name when absent.
	AnnotationClusterName = "kubernaut.io/cluster-name"
	// ClusterSecretKubeconfig is the key of a cluster Secret holding a kubeconfig (its current
	// context is used).
	ClusterSecretKubeconfig = "kubeconfig"
	// ClusterSecretServer, ClusterSecretCA and ClusterSecretToken are the keys of a cluster
	// Secret without a kubeconfig: the API server's URL, its CA bundle (PEM) and a bearer token.
	ClusterSecretServer = "server"
	ClusterSecretCA     = "ca.crt"
	ClusterSecretToken  = "token"
	// ClusterSecretIdentities is the optional key of a cluster Secret that maps the hub's users
	// and groups to the identities the target cluster knows them by (YAML: users and groups, each
	// a map from the hub's name to the target's). With it, a requester is checked there as the
	// mapped identity, and one the map does not name is refused.
	ClusterSecretIdentities = "identities"
)
