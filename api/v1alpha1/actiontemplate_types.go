package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ActionTemplateSpec defines an action type: what runs, with which inputs, on which targets,
// with which permissions.
type ActionTemplateSpec struct {
	// description says what the action does, for people choosing one.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`

	// image is the container image that runs the action. The manager may map a short name
	// (for example kubernaut-actions) to a full reference with its --action-images flag.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image"`

	// command overrides the image's entrypoint. Each item is a Go template rendered with
	// .Parameters, .Target, .Execution and .DryRun and an allowlist of functions, with caps on
	// iterations, size and time (see docs/template-functions.md); each rendered
	// item is one argv entry, never passed through a shell.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Command []string `json:"command,omitempty"`

	// args are the arguments, templated as command is.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Args []string `json:"args,omitempty"`

	// env adds environment variables whose values are templated as command is. The names
	// the executor sets itself (ACTION_TYPE, TARGET_*, ACTION_PARAMETERS, DRY_RUN, EXECUTION_*)
	// cannot be overridden.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Env []TemplatedEnvVar `json:"env,omitempty"`

	// parameters is the JSON Schema (draft 7) that an execution's parameters must satisfy.
	// Top-level defaults are applied before the action runs.
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Type=object
	Parameters *apiextensionsv1.JSON `json:"parameters,omitempty"`

	// targetKinds lists the target kinds the action accepts, for example [Deployment].
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^[A-Z][A-Za-z0-9]*$`
	TargetKinds []string `json:"targetKinds"`

	// rbac is what the action's ServiceAccount may do while an execution runs.
	// +optional
	RBAC ActionRBAC `json:"rbac,omitempty"`

	// defaultTimeout applies to executions that set no timeout.
	// +optional
	// +kubebuilder:default="5m"
	DefaultTimeout *metav1.Duration `json:"defaultTimeout,omitempty"`

	// maxTimeout is the longest timeout an execution may ask for.
	// +optional
	// +kubebuilder:default="30m"
	MaxTimeout *metav1.Duration `json:"maxTimeout,omitempty"`

	// retryPolicy says which failures are retried.
	// +optional
	RetryPolicy RetryPolicy `json:"retryPolicy,omitempty"`

	// resources are the action container's requests and limits. When unset, small defaults apply.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// mutating says whether the action changes its target. At most one execution of a mutating
	// action runs on a target object at a time: another waits (Pending, TargetBusy) until it
	// ends, in creation order. Read-only actions (false) run side by side. Default true.
	// +optional
	// +kubebuilder:default=true
	Mutating *bool `json:"mutating,omitempty"`

	// concurrency caps how many executions of this action run at once, cluster-wide; one over
	// the cap waits (Pending, QueueFull), in creation order.
	// +optional
	Concurrency *ConcurrencyLimit `json:"concurrency,omitempty"`

	// rateLimit caps how many executions of this action start per period, cluster-wide; one
	// past it waits (Pending, RateLimited) until the oldest start in the period is older than
	// the period.
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`

	// allowProtectedNamespaces lets executions of this action target the executor's protected
	// namespaces (--protected-namespaces: kube-system, kube-public, kube-node-lease and the
	// executor's own by default), which the webhook otherwise refuses.
	// +optional
	AllowProtectedNamespaces bool `json:"allowProtectedNamespaces,omitempty"`

	// approval says whether executions of this action wait for a person's approval before
	// anything runs: Optional (the default: an execution may ask for it with spec.approval),
	// Required (every execution waits), or Never (none may ask).
	// +optional
	// +kubebuilder:default=Optional
	Approval ApprovalPolicy `json:"approval,omitempty"`
}

// ConcurrencyLimit caps the executions of one action that run at once.
type ConcurrencyLimit struct {
	// max is the most executions of the action running at once, cluster-wide.
	// +required
	// +kubebuilder:validation:Minimum=1
	Max int32 `json:"max"`
}

// RateLimit caps the executions of one action that start in a sliding period.
type RateLimit struct {
	// max is the most executions of the action whose first attempt starts within one period.
	// +required
	// +kubebuilder:validation:Minimum=1
	Max int32 `json:"max"`

	// per is the period, for example 1h.
	// +required
	Per metav1.Duration `json:"per"`
}

// ApprovalPolicy is whether executions of an action wait for approval.
// +kubebuilder:validation:Enum=Optional;Required;Never
type ApprovalPolicy string

const (
	// ApprovalOptional: an execution waits for approval when it asks (spec.approval: Required).
	ApprovalOptional ApprovalPolicy = "Optional"
	// ApprovalPolicyRequired: every execution of the action waits for approval.
	ApprovalPolicyRequired ApprovalPolicy = "Required"
	// ApprovalNever: no execution of the action may ask for approval.
	ApprovalNever ApprovalPolicy = "Never"
)

// IsMutating reports whether the action changes its target (the default).
func (s *ActionTemplateSpec) IsMutating() bool { return s.Mutating == nil || *s.Mutating }

// TemplatedEnvVar is an environment variable whose value is a Go template.
type TemplatedEnvVar struct {
	// name of the variable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	Name string `json:"name"`

	// value is a Go template, rendered as command is.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Value string `json:"value,omitempty"`
}

// RBACScope says where an action's rules are granted.
// +kubebuilder:validation:Enum=Namespaced;Cluster
type RBACScope string

const (
	// RBACScopeNamespaced grants the rules in the target's namespace only.
	RBACScopeNamespaced RBACScope = "Namespaced"
	// RBACScopeCluster grants the rules cluster-wide, for cluster-scoped targets such as nodes.
	RBACScopeCluster RBACScope = "Cluster"
)

// ActionRBAC is the permission an action needs.
type ActionRBAC struct {
	// rules are the permissions the action needs. Rules on the target's own resource are
	// narrowed to the target's name when granted.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Rules []rbacv1.PolicyRule `json:"rules,omitempty"`

	// scope is Namespaced (the target's namespace) or Cluster (cluster-scoped targets).
	// +optional
	// +kubebuilder:default=Namespaced
	Scope RBACScope `json:"scope,omitempty"`
}

// RetryPolicy says which failed attempts are retried.
type RetryPolicy struct {
	// idempotent is true when running the action twice has the effect of running it once.
	// Failed attempts of a non-idempotent action are not retried.
	// +optional
	// +kubebuilder:default=true
	Idempotent *bool `json:"idempotent,omitempty"`

	// nonRetryableExitCodes are exit codes that mean "failed, do not retry".
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	NonRetryableExitCodes []int32 `json:"nonRetryableExitCodes,omitempty"`

	// maxRetries caps spec.maxRetries of the template's executions.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	MaxRetries *int32 `json:"maxRetries,omitempty"`
}

// ActionTemplateStatus is what the executor observed of a template.
type ActionTemplateStatus struct {
	// conditions: Ready, and the facts behind it.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation this status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// clusterRoleName is the ClusterRole that holds the template's rules once they are
	// materialized. Executions are granted a copy narrowed to their target.
	// +optional
	ClusterRoleName string `json:"clusterRoleName,omitempty"`

	// effectiveRules are the rules an execution's ServiceAccount is granted, before narrowing
	// to the target's name.
	// +optional
	// +listType=atomic
	EffectiveRules []rbacv1.PolicyRule `json:"effectiveRules,omitempty"`
}

// ActionTemplate defines an action type that KubernetesExecutions run by name.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=atpl,categories=kubernaut
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.spec.image`
// +kubebuilder:printcolumn:name="Kinds",type=string,JSONPath=`.spec.targetKinds`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
type ActionTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec defines the action.
	// +required
	Spec ActionTemplateSpec `json:"spec"`

	// status is what the executor observed.
	// +optional
	Status ActionTemplateStatus `json:"status,omitempty"`
}

// ActionTemplateList is a list of ActionTemplates.
// +kubebuilder:object:root=true
type ActionTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ActionTemplate `json:"items"`
}
