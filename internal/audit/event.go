// Package audit turns a finished KubernetesExecution into an audit event and delivers it to
// the storage service.
//
// Build is pure: it reads the execution and a few facts that are not on it (Inputs) and
// returns the Event, with sensitive parameters redacted. A Sender delivers an Event over HTTP,
// as plain JSON or as a CloudEvent, idempotently by its EventID, and classifies every failure
// as retryable or as a defect; Backoff spaces the retries. Nothing here touches the API
// server, so the controller decides when to build, send and retry.
package audit

import (
	"encoding/json"
	"fmt"
	"time"
)

// EventType is the eventType of every execution audit event.
const EventType = "kubernetes.execution"

// PhaseCancelled is the phase an Event reports for an execution that was deleted before it
// reached a terminal phase. It is not a phase of the API: the execution itself never shows it.
const PhaseCancelled = "Cancelled"

// ReasonDeleted is the reason an Event reports for a cancelled execution.
const ReasonDeleted = "Deleted"

// ReasonNotMeasured is the resourceUsageUnavailable reason when the caller measured nothing
// and gave no reason of its own.
const ReasonNotMeasured = "NotMeasured"

// Redacted replaces the value of every sensitive parameter, and every occurrence of a
// sensitive value in the action's output and error.
const Redacted = "<redacted>"

// Event is the audit record of one execution's outcome, as the storage service receives it.
// Every field is always present in its JSON form: objects that do not apply are null, lists
// that are empty are [], and cluster is "" for the local cluster.
type Event struct {
	// EventType is always EventType.
	EventType string `json:"eventType"`
	// EventID identifies the outcome: the same execution ending the same way gives the same
	// id, so the storage service recognises a resend (see EventID).
	EventID string `json:"eventId"`
	// Timestamp is when the execution reached its outcome, in UTC.
	Timestamp time.Time `json:"timestamp"`
	// ExecutionName is the KubernetesExecution's name.
	ExecutionName string `json:"executionName"`
	// ExecutionNamespace is the KubernetesExecution's namespace.
	ExecutionNamespace string `json:"executionNamespace"`
	// ExecutionUID is the KubernetesExecution's UID.
	ExecutionUID string `json:"executionUID"`
	// ActionType is the name of the ActionTemplate that defines the action.
	ActionType string `json:"actionType"`
	// Phase is the terminal phase (Completed, Failed, TimedOut) or PhaseCancelled.
	Phase string `json:"phase"`
	// Reason is the PascalCase reason of the execution's Ready condition, for example
	// Succeeded, MaxRetriesExceeded or ValidationFailed.
	Reason string `json:"reason"`
	// Target is the object the action acted on.
	Target Target `json:"target"`
	// Result is what the action reported.
	Result Result `json:"result"`
	// JobInfo describes the last attempt's Job; null when no attempt started.
	JobInfo *JobInfo `json:"jobInfo"`
	// WorkflowExecutionRef names the WorkflowExecution the execution is a step of; null when
	// none.
	WorkflowExecutionRef *WorkflowExecutionRef `json:"workflowExecutionRef"`
	// StepIndex is the execution's position in its workflow.
	StepIndex int32 `json:"stepIndex"`
	// DryRun is true when the action only reported what it would change.
	DryRun bool `json:"dryRun"`
	// Requester is the user the executor admitted the execution for; null when the execution
	// carries no admission record.
	Requester *Requester `json:"requester"`
	// CreatedBy is the user who created the execution on the requester's behalf
	// (kubernaut.io/on-behalf-of), allowed because they may impersonate the requester; null
	// when the requester created it.
	CreatedBy *Requester `json:"createdBy"`
	// Approval is the approver's decision on an execution that waited for approval; null when
	// none was made (no approval needed, or the wait timed out).
	Approval *Approval `json:"approval"`
	// Template is the ActionTemplate as it was admitted and run.
	Template Template `json:"template"`
	// Parameters are the execution's parameters, a JSON object, with every sensitive value
	// replaced by Redacted.
	Parameters json.RawMessage `json:"parameters"`
	// Attempts are the attempts that started, oldest first.
	Attempts []Attempt `json:"attempts"`
	// Cluster names the cluster the action ran on; empty for the local cluster.
	Cluster string `json:"cluster"`
}

// Target names the object an action acts on.
type Target struct {
	// Namespace of the target; empty for cluster-scoped kinds.
	Namespace string `json:"namespace"`
	// ResourceKind is the target's kind, for example Deployment.
	ResourceKind string `json:"resourceKind"`
	// ResourceName is the target's name.
	ResourceName string `json:"resourceName"`
}

// Result is the outcome of an execution.
type Result struct {
	// Success is true when the action did what it was asked.
	Success bool `json:"success"`
	// Output is the action's output for people, with sensitive values redacted.
	Output string `json:"output"`
	// Error says why the execution failed, with sensitive values redacted.
	Error string `json:"error"`
	// Duration is how long the attempt that produced the result ran, in seconds (a JSON
	// number with millisecond precision, so the storage service can sum and compare it).
	// Without such an attempt it is how long the execution ran, and 0 when it never started.
	Duration float64 `json:"duration"`
}

// JobInfo describes the Job of an execution's last attempt.
type JobInfo struct {
	// Name of the Job.
	Name string `json:"name"`
	// PodName is the pod that ran the action; empty when unknown.
	PodName string `json:"podName"`
	// ExitCode of the action's container; null when it did not terminate.
	ExitCode *int32 `json:"exitCode"`
	// ResourceUsage is what the pod consumed; null when it could not be measured.
	ResourceUsage *ResourceUsage `json:"resourceUsage"`
	// ResourceUsageUnavailable says why ResourceUsage is null; empty when it is not.
	ResourceUsageUnavailable string `json:"resourceUsageUnavailable,omitempty"`
}

// ResourceUsage is what an action's pod consumed.
type ResourceUsage struct {
	// CPUSeconds is the CPU time the pod used, in seconds.
	CPUSeconds float64 `json:"cpuSeconds"`
	// PeakMemoryBytes is the pod's highest memory use, in bytes.
	PeakMemoryBytes int64 `json:"peakMemoryBytes"`
}

// WorkflowExecutionRef names a WorkflowExecution.
type WorkflowExecutionRef struct {
	// Name of the WorkflowExecution.
	Name string `json:"name"`
	// Namespace of the WorkflowExecution.
	Namespace string `json:"namespace"`
}

// Requester is the user an execution was admitted for.
type Requester struct {
	// Username as the API server authenticated it.
	Username string `json:"username"`
	// UID of the user, when the authenticator gave one.
	UID string `json:"uid"`
	// Groups the user belonged to.
	Groups []string `json:"groups"`
}

// Approval is an approver's decision, as the executor's webhook recorded it.
type Approval struct {
	// Decision is Approved or Denied.
	Decision string `json:"decision"`
	// Approver is the username of the user who decided.
	Approver string `json:"approver"`
	// Time is when they decided, in UTC.
	Time time.Time `json:"time"`
	// Reason is the approver's explanation; empty when they gave none.
	Reason string `json:"reason"`
}

// Template identifies the ActionTemplate an execution ran.
type Template struct {
	// Name of the ActionTemplate (the action type).
	Name string `json:"name"`
	// Generation of the ActionTemplate that admission checked; 0 when none was recorded.
	Generation int64 `json:"generation"`
	// Image is the container image the attempts ran, after the manager's image mapping.
	Image string `json:"image"`
}

// Attempt is one run of the action, as one Job.
type Attempt struct {
	// Number counts attempts from 1.
	Number int32 `json:"number"`
	// Job is the Job that ran the attempt.
	Job string `json:"job"`
	// Pod is the pod that ran the attempt; empty when unknown (only the last attempt's pod is
	// given to Build).
	Pod string `json:"pod"`
	// Start is when the Job started; null when unknown.
	Start *time.Time `json:"start"`
	// End is when the Job finished; null when unknown.
	End *time.Time `json:"end"`
	// ExitCode of the action's container; null when it did not terminate.
	ExitCode *int32 `json:"exitCode"`
	// Reason is a PascalCase word for how the attempt ended, for example Succeeded.
	Reason string `json:"reason"`
}

// Encode returns the event as compact JSON, without escaping <, > and & (so Redacted reads as
// itself in the stored record). It is the body the Sender posts in the kubernaut format.
func (e Event) Encode() ([]byte, error) {
	b, err := marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encoding audit event %s: %w", e.EventID, err)
	}
	return b, nil
}
