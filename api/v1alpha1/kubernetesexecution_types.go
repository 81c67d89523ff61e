package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ExecutionPhase is where an execution is in its life.
// +kubebuilder:validation:Enum=AwaitingApproval;Pending;Running;Retrying;Completed;Failed;TimedOut
type ExecutionPhase string

const (
	// PhaseAwaitingApproval: the execution waits for a person to approve or deny it (condition
	// Approved=Unknown); no Job and no grant exist.
	PhaseAwaitingApproval ExecutionPhase = "AwaitingApproval"
	// PhasePending: accepted, no Job created yet: waiting for the template, for another
	// execution on its target (TargetBusy), under a concurrency cap (QueueFull) or a rate limit
	// (RateLimited).
	PhasePending ExecutionPhase = "Pending"
	// PhaseRunning: the Job of the current attempt exists and has not finished.
	PhaseRunning ExecutionPhase = "Running"
	// PhaseRetrying: an attempt failed and the next one waits for its backoff to pass.
	PhaseRetrying ExecutionPhase = "Retrying"
	// PhaseCompleted: an attempt succeeded. Terminal.
	PhaseCompleted ExecutionPhase = "Completed"
	// PhaseFailed: the action failed and no retry is left or allowed. Terminal.
	PhaseFailed ExecutionPhase = "Failed"
	// PhaseTimedOut: the execution ran past its timeout; its Job was stopped. Terminal.
	PhaseTimedOut ExecutionPhase = "TimedOut"
)

// IsTerminal reports whether no further attempt will be made in this phase.
func (p ExecutionPhase) IsTerminal() bool {
	return p == PhaseCompleted || p == PhaseFailed || p == PhaseTimedOut
}

// DefaultMaxRetries is the number of retries an execution gets when spec.maxRetries is not set.
const DefaultMaxRetries int32 = 3

// MaxRetriesCap is the highest spec.maxRetries the API accepts.
const MaxRetriesCap int32 = 10

// KubernetesExecutionSpec is one remediation action against one target. It is immutable.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable; create a new KubernetesExecution instead"
type KubernetesExecutionSpec struct {
	// workflowExecutionRef names the WorkflowExecution this execution is a step of.
	// +optional
	WorkflowExecutionRef *WorkflowExecutionReference `json:"workflowExecutionRef,omitempty"`

	// stepIndex is the position of this execution in its workflow.
	// +optional
	// +kubebuilder:validation:Minimum=0
	StepIndex int32 `json:"stepIndex,omitempty"`

	// action is what to do and to which object.
	// +required
	Action ActionSpec `json:"action"`

	// timeout bounds the execution from the start of its first attempt, retries and backoff
	// included, and bounds the wait for approval. When unset or 0s, the template's
	// defaultTimeout applies.
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// queueTimeout bounds the wait to start (behind another execution on the target, over a
	// concurrency cap, past a rate limit), counted from the creation or the approval. Past it
	// the execution fails with the reason it waited for. When unset or 0s, the timeout applies.
	// +optional
	QueueTimeout *metav1.Duration `json:"queueTimeout,omitempty"`

	// approval: Required makes the execution wait for a person's approval before anything runs,
	// on a template whose approval policy is Optional; a template's Required applies whatever
	// this says.
	// +optional
	// +kubebuilder:validation:Enum=Required
	Approval ApprovalRequest `json:"approval,omitempty"`

	// maxRetries is how many times a failed attempt is retried (so at most maxRetries+1 Jobs).
	// When unset, 3, or the template's retryPolicy.maxRetries when that is lower; when set, it
	// may not exceed the template's retryPolicy.maxRetries.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	MaxRetries *int32 `json:"maxRetries,omitempty"`

	// dryRun asks the action to compute and report what it would change without changing it
	// (DRY_RUN=true in its environment; the project's actions use server-side dry run).
	// +optional
	DryRun bool `json:"dryRun,omitempty"`

	// admission is what the executor recorded when it admitted the execution: who asked for it
	// and which generation of its ActionTemplate was checked. The executor's admission webhook
	// sets it (a value sent by the client is replaced, as the API server does for a
	// CertificateSigningRequest's username); an admission policy in the API server rejects a
	// create whose record is not the creating user's own identity, and the spec is immutable.
	// The executor never acts with more than this user's rights, checked again before every
	// attempt.
	// +optional
	Admission *AdmissionRecord `json:"admission,omitempty"`
}

// AdmissionRecord is what the executor recorded when it admitted an execution.
type AdmissionRecord struct {
	// requester is the user who created the execution, as the API server authenticated them
	// (with impersonation, the impersonated user).
	// +required
	Requester UserInfo `json:"requester"`

	// createdBy is the user who created the execution on behalf of the requester (the
	// kubernaut.io/on-behalf-of annotations), allowed because they may impersonate the requester;
	// unset when the requester created it.
	// +optional
	CreatedBy *UserInfo `json:"createdBy,omitempty"`

	// templateUID is the UID of the ActionTemplate that was checked.
	// +optional
	TemplateUID types.UID `json:"templateUID,omitempty"`

	// templateGeneration is the generation of the ActionTemplate that was checked. An attempt
	// never starts once the template has changed (reason TemplateChanged).
	// +optional
	// +kubebuilder:validation:Minimum=0
	TemplateGeneration int64 `json:"templateGeneration,omitempty"`
}

// UserInfo is an authenticated user, as SubjectAccessReviews ask about them.
type UserInfo struct {
	// username is the user's name, for example jane or system:serviceaccount:ns:name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Username string `json:"username"`

	// uid identifies the user across name changes, when the authenticator gives one.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	UID string `json:"uid,omitempty"`

	// groups the user belongs to.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:MaxLength=1024
	Groups []string `json:"groups,omitempty"`

	// extra holds the authenticator's additional attributes (for example scopes), which
	// authorizers may consult.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Extra map[string]ExtraValue `json:"extra,omitempty"`
}

// ExtraValue is one attribute of UserInfo.extra.
// +listType=atomic
// +kubebuilder:validation:MaxItems=64
type ExtraValue []string

// WorkflowExecutionReference names the WorkflowExecution that requested an execution.
type WorkflowExecutionReference struct {
	// name of the WorkflowExecution.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// namespace of the WorkflowExecution.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
}

// ActionSpec is the action to run.
type ActionSpec struct {
	// type is the name of the ActionTemplate that defines the action, for example scale-deployment.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Type string `json:"type"`

	// parameters are the action's inputs, a JSON object checked against the template's schema.
	// +optional
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	Parameters *apiextensionsv1.JSON `json:"parameters,omitempty"`

	// target is the object the action acts on.
	// +required
	Target TargetSpec `json:"target"`
}

// TargetSpec names the object an action acts on.
type TargetSpec struct {
	// namespace of the target. Required for namespaced kinds; empty for cluster-scoped kinds
	// such as Node.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$`
	Namespace string `json:"namespace,omitempty"`

	// resourceKind is the kind of the target, for example Deployment, Pod or Node.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Z][A-Za-z0-9]*$`
	ResourceKind string `json:"resourceKind"`

	// resourceName is the name of the target.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ResourceName string `json:"resourceName"`

	// cluster names the registered target cluster the target lives in (a Secret labelled
	// kubernaut.io/cluster in the executor's namespace); empty for the executor's own cluster.
	// The execution's ServiceAccount, grant and Jobs are then created there, in a namespace of
	// the execution's namespace's name, and its status and audit event stay here.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$`
	Cluster string `json:"cluster,omitempty"`
}

// KubernetesExecutionStatus is what the executor observed of an execution.
type KubernetesExecutionStatus struct {
	// phase is where the execution is: Pending, Running, Retrying, Completed, Failed or TimedOut.
	// +optional
	Phase ExecutionPhase `json:"phase,omitempty"`

	// conditions: Ready (True once Completed), Reconciling (True while attempts are in flight)
	// and Stalled (True once Failed or TimedOut).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation this status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// startTime is when the executor first acted on the execution; the timeout counts from it.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// completionTime is when the execution reached a terminal phase.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// retryCount is how many attempts were started after the first one.
	// +optional
	RetryCount int32 `json:"retryCount,omitempty"`

	// nextRetryTime is when the next attempt starts, while the phase is Retrying.
	// +optional
	NextRetryTime *metav1.Time `json:"nextRetryTime,omitempty"`

	// attempts records every attempt, one Job each, oldest first.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=11
	Attempts []Attempt `json:"attempts,omitempty"`

	// result is the outcome of the last finished attempt.
	// +optional
	Result *ExecutionResult `json:"result,omitempty"`

	// waitingSince is when the execution began to wait before its first attempt (for approval,
	// behind another execution, under a cap or a rate limit): the approval and queue timeouts
	// count from it (the queue timeout from the approval, when there was one).
	// +optional
	WaitingSince *metav1.Time `json:"waitingSince,omitempty"`

	// approval is the decision on an execution that waited for approval: approved or denied,
	// by whom, when and why, as the executor's webhook recorded it.
	// +optional
	Approval *ApprovalRecord `json:"approval,omitempty"`

	// audit is the delivery of the execution's audit event, once it has ended.
	// +optional
	Audit *AuditStatus `json:"audit,omitempty"`
}

// Attempt is one run of the action, as one Job.
type Attempt struct {
	// number counts attempts from 1.
	// +required
	// +kubebuilder:validation:Minimum=1
	Number int32 `json:"number"`

	// jobName is the Job that ran the attempt.
	// +required
	JobName string `json:"jobName"`

	// startTime is when the Job started.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// endTime is when the Job finished.
	// +optional
	EndTime *metav1.Time `json:"endTime,omitempty"`

	// exitCode of the action's container, when it terminated.
	// +optional
	ExitCode *int32 `json:"exitCode,omitempty"`

	// reason is a PascalCase word for how the attempt ended, for example Succeeded,
	// ActionFailed, DeadlineExceeded or JobDeleted.
	// +optional
	Reason string `json:"reason,omitempty"`

	// message says what happened, from the action's result or the Job.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Message string `json:"message,omitempty"`
}

// Finished reports whether the attempt has ended.
func (a *Attempt) Finished() bool { return a.EndTime != nil || a.Reason != "" }

// ExecutionResult is the outcome of an action, as the action reported it.
type ExecutionResult struct {
	// success is true when the action did what it was asked.
	Success bool `json:"success"`

	// output is the action's human-readable output.
	// +optional
	Output string `json:"output,omitempty"`

	// error says why the action failed.
	// +optional
	Error string `json:"error,omitempty"`

	// startTime is when the attempt that produced this result started.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// endTime is when the attempt that produced this result ended.
	// +optional
	EndTime *metav1.Time `json:"endTime,omitempty"`

	// exitCode of the action's container.
	// +optional
	ExitCode *int32 `json:"exitCode,omitempty"`

	// data is structured detail the action reported, for example the target before and after.
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	Data *apiextensionsv1.JSON `json:"data,omitempty"`

	// resourceUsage is what the action measured of its own process and the processes it
	// started, as it reported it in its result. Absent when the action's image does not report
	// it, or when no result was read.
	// +optional
	ResourceUsage *ResourceUsage `json:"resourceUsage,omitempty"`
}

// ResourceUsage is what an action's process and its children consumed, as the action measured it
// (getrusage on Linux). Both figures are integers: a CRD does not accept floating-point numbers
// by default.
type ResourceUsage struct {
	// cpuMillis is the CPU time used, user and system, in milliseconds.
	// +required
	// +kubebuilder:validation:Minimum=0
	CPUMillis int64 `json:"cpuMillis"`

	// peakMemoryBytes is the largest resident set size reached, in bytes: the larger of the
	// action's own peak and that of its largest child.
	// +required
	// +kubebuilder:validation:Minimum=0
	PeakMemoryBytes int64 `json:"peakMemoryBytes"`
}

// ApprovalRequest is whether an execution asks for approval.
type ApprovalRequest string

// ApprovalRequired asks for approval.
const ApprovalRequired ApprovalRequest = "Required"

// ApprovalDecision is an approver's decision.
// +kubebuilder:validation:Enum=Approved;Denied
type ApprovalDecision string

const (
	// DecisionApproved: the execution may run.
	DecisionApproved ApprovalDecision = "Approved"
	// DecisionDenied: the execution fails, with the approver's reason.
	DecisionDenied ApprovalDecision = "Denied"
)

// ApprovalRecord is a decision on an execution that waited for approval.
type ApprovalRecord struct {
	// decision is Approved or Denied.
	// +required
	Decision ApprovalDecision `json:"decision"`

	// approver is the user who set the Approved condition.
	// +required
	Approver UserInfo `json:"approver"`

	// time is when the decision was made.
	// +required
	Time metav1.Time `json:"time"`

	// reason is the approver's explanation (the Approved condition's message).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason,omitempty"`
}

// KubernetesExecution runs one remediation action against one target as an isolated Job.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=kexec,categories=kubernaut
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.spec.action.type`
// +kubebuilder:printcolumn:name="Kind",type=string,JSONPath=`.spec.action.target.resourceKind`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.action.target.resourceName`
// +kubebuilder:printcolumn:name="Attempts",type=integer,JSONPath=`.status.attempts[-1:].number`,description="Attempts started"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,description="Why it is in its phase: what it waits for (TargetBusy, QueueFull, RateLimited, AwaitingApproval) or how it ended"
// +kubebuilder:printcolumn:name="Target-NS",type=string,JSONPath=`.spec.action.target.namespace`,priority=1
// +kubebuilder:printcolumn:name="Success",type=boolean,JSONPath=`.status.result.success`,priority=1
// +kubebuilder:printcolumn:name="Requester",type=string,JSONPath=`.spec.admission.requester.username`,priority=1
// +kubebuilder:printcolumn:name="Audited",type=string,JSONPath=`.status.conditions[?(@.type=="Audited")].status`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.action.target.cluster`,priority=1,description="The target cluster; empty for this one (last, so the other columns keep their places)"
type KubernetesExecution struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the requested action. Immutable.
	// +required
	Spec KubernetesExecutionSpec `json:"spec"`

	// status is what the executor observed.
	// +optional
	Status KubernetesExecutionStatus `json:"status,omitempty"`
}

// KubernetesExecutionList is a list of KubernetesExecutions.
// +kubebuilder:object:root=true
type KubernetesExecutionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []KubernetesExecution `json:"items"`
}
