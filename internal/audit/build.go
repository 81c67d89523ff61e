package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// Inputs are the facts an Event needs that the execution does not hold.
type Inputs struct {
	// Template is the execution's ActionTemplate as the controller reads it now, for its
	// parameter schema; nil when it no longer exists. When it is nil, or it is not the
	// template generation that admission checked (spec.admission), a sensitive mark may have
	// changed since, so every parameter value is redacted.
	Template *v1alpha1.ActionTemplate
	// TemplateImage is the image the attempts ran, after the manager's image mapping.
	TemplateImage string
	// PodName is the pod of the last attempt; empty when unknown.
	PodName string
	// ResourceUsage is what the last attempt's pod consumed; nil when it could not be measured.
	ResourceUsage *ResourceUsage
	// ResourceUsageUnavailable says why ResourceUsage is nil, as a PascalCase word (for
	// example MetricsUnavailable); ReasonNotMeasured when empty.
	ResourceUsageUnavailable string
	// Cluster names the cluster the action ran on; empty for the local cluster.
	Cluster string
}

// Build returns the audit event of an execution's outcome. The execution must be in a
// terminal phase, or being deleted (the event then reports PhaseCancelled). The requester and
// the template generation come from spec.admission, never from the template as it is now.
// Parameters are redacted as Redact describes, and every sensitive value of at least
// minScrubLength bytes is also removed from the result's output and error. Build is
// deterministic: the same execution and inputs give the same event, byte for byte.
func Build(obj *v1alpha1.KubernetesExecution, in Inputs) (Event, error) {
	if obj == nil {
		return Event{}, fmt.Errorf("building audit event: no execution")
	}
	phase, reason := outcome(obj)
	if phase == "" {
		return Event{}, fmt.Errorf("building audit event for %s/%s: phase %q is not terminal and the execution is not being deleted",
			obj.Namespace, obj.Name, obj.Status.Phase)
	}

	schema, known := parameterSchema(obj, in.Template)
	params, secrets, err := Redact(parameters(obj), schema, !known)
	if err != nil {
		return Event{}, fmt.Errorf("building audit event for %s/%s: %w", obj.Namespace, obj.Name, err)
	}

	spec, status := &obj.Spec, &obj.Status
	ts := timestamp(obj)
	ev := Event{
		EventType:          EventType,
		EventID:            EventID(string(obj.UID), phase, len(status.Attempts)),
		Timestamp:          ts,
		ExecutionName:      obj.Name,
		ExecutionNamespace: obj.Namespace,
		ExecutionUID:       string(obj.UID),
		ActionType:         spec.Action.Type,
		Phase:              phase,
		Reason:             reason,
		Target: Target{
			Namespace:    spec.Action.Target.Namespace,
			ResourceKind: spec.Action.Target.ResourceKind,
			ResourceName: spec.Action.Target.ResourceName,
		},
		Result:     result(obj, phase, ts, secrets),
		JobInfo:    jobInfo(obj, in),
		StepIndex:  spec.StepIndex,
		DryRun:     spec.DryRun,
		Template:   Template{Name: spec.Action.Type, Image: in.TemplateImage},
		Parameters: params,
		Attempts:   attempts(status.Attempts, in.PodName),
		Cluster:    in.Cluster,
	}
	if ref := spec.WorkflowExecutionRef; ref != nil {
		ev.WorkflowExecutionRef = &WorkflowExecutionRef{Name: ref.Name, Namespace: ref.Namespace}
	}
	if adm := spec.Admission; adm != nil {
		groups := append([]string{}, adm.Requester.Groups...)
		ev.Requester = &Requester{Username: adm.Requester.Username, UID: adm.Requester.UID, Groups: groups}
		if c := adm.CreatedBy; c != nil {
			ev.CreatedBy = &Requester{Username: c.Username, UID: c.UID, Groups: append([]string{}, c.Groups...)}
		}
		ev.Template.Generation = adm.TemplateGeneration
	}
	if a := status.Approval; a != nil {
		ev.Approval = &Approval{Decision: string(a.Decision), Approver: a.Approver.Username, Time: a.Time.UTC(), Reason: a.Reason}
	}
	return ev, nil
}

// EventID identifies an execution's outcome: the first 16 bytes, in hex (32 characters), of
// the SHA-256 of the event type, the execution's UID, its terminal phase (or PhaseCancelled)
// and the number of attempts it started, separated by NUL bytes. A resend of the same outcome
// has the same id, so the storage service can refuse it as a duplicate; UIDs are unique per
// object, so two executions never share an id, even with the same name.
func EventID(uid, phase string, attempts int) string {
	h := sha256.New()
	for _, part := range []string{EventType, uid, phase, strconv.Itoa(attempts)} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// outcome returns the phase and reason an event reports, or an empty phase when the
// execution has not ended and is not being deleted.
func outcome(obj *v1alpha1.KubernetesExecution) (phase, reason string) {
	if !obj.Status.Phase.IsTerminal() {
		if obj.DeletionTimestamp.IsZero() {
			return "", ""
		}
		return PhaseCancelled, ReasonDeleted
	}
	phase = string(obj.Status.Phase)
	if c := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady); c != nil && c.Reason != "" {
		return phase, c.Reason
	}
	if n := len(obj.Status.Attempts); n > 0 && obj.Status.Attempts[n-1].Reason != "" {
		return phase, obj.Status.Attempts[n-1].Reason
	}
	return phase, phase
}

// parameterSchema returns the raw parameter schema of tpl, and whether it is the schema that
// admission checked: tpl exists and, when admission recorded them, has the same UID and
// generation.
func parameterSchema(obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate) ([]byte, bool) {
	if tpl == nil {
		return nil, false
	}
	if adm := obj.Spec.Admission; adm != nil {
		if adm.TemplateUID != "" && adm.TemplateUID != tpl.UID {
			return nil, false
		}
		if adm.TemplateGeneration != 0 && adm.TemplateGeneration != tpl.Generation {
			return nil, false
		}
	}
	if tpl.Spec.Parameters == nil {
		return nil, true
	}
	return tpl.Spec.Parameters.Raw, true
}

// parameters returns the execution's raw parameters, nil when it has none.
func parameters(obj *v1alpha1.KubernetesExecution) []byte {
	if p := obj.Spec.Action.Parameters; p != nil {
		return p.Raw
	}
	return nil
}

// timestamp returns when the execution reached its outcome: its completion time, else its
// result's end, else its deletion time, else its creation time. All are stored on the object,
// so a rebuilt event carries the same timestamp.
func timestamp(obj *v1alpha1.KubernetesExecution) time.Time {
	for _, t := range []*metav1.Time{obj.Status.CompletionTime, resultEnd(obj), obj.DeletionTimestamp} {
		if t != nil && !t.IsZero() {
			return t.UTC()
		}
	}
	return obj.CreationTimestamp.UTC()
}

// resultEnd returns the end time of the execution's result, nil when it has none.
func resultEnd(obj *v1alpha1.KubernetesExecution) *metav1.Time {
	if obj.Status.Result == nil {
		return nil
	}
	return obj.Status.Result.EndTime
}

// result returns the event's result: the execution's, with secrets scrubbed from its texts.
func result(obj *v1alpha1.KubernetesExecution, phase string, ts time.Time, secrets []string) Result {
	out := Result{Success: phase == string(v1alpha1.PhaseCompleted)}
	var start, end *metav1.Time
	if r := obj.Status.Result; r != nil {
		out.Success = r.Success && phase != PhaseCancelled
		out.Output = scrub(r.Output, secrets)
		out.Error = scrub(r.Error, secrets)
		start, end = r.StartTime, r.EndTime
	}
	if phase == PhaseCancelled && out.Error == "" {
		out.Error = "the execution was deleted before it finished"
	}
	switch {
	case start != nil && end != nil:
		out.Duration = seconds(end.Sub(start.Time))
	case obj.Status.StartTime != nil:
		out.Duration = seconds(ts.Sub(obj.Status.StartTime.Time))
	}
	return out
}

// seconds returns d in seconds, rounded to the millisecond, never negative.
func seconds(d time.Duration) float64 {
	if d < 0 {
		return 0
	}
	return math.Round(d.Seconds()*1000) / 1000
}

// jobInfo describes the last attempt's Job, nil when no attempt started.
func jobInfo(obj *v1alpha1.KubernetesExecution, in Inputs) *JobInfo {
	n := len(obj.Status.Attempts)
	if n == 0 {
		return nil
	}
	last := obj.Status.Attempts[n-1]
	info := &JobInfo{Name: last.JobName, PodName: in.PodName, ExitCode: copyInt32(last.ExitCode)}
	if info.ExitCode == nil && obj.Status.Result != nil {
		info.ExitCode = copyInt32(obj.Status.Result.ExitCode)
	}
	if in.ResourceUsage != nil {
		u := *in.ResourceUsage
		info.ResourceUsage = &u
	} else {
		info.ResourceUsageUnavailable = in.ResourceUsageUnavailable
		if info.ResourceUsageUnavailable == "" {
			info.ResourceUsageUnavailable = ReasonNotMeasured
		}
	}
	return info
}

// attempts converts the execution's attempts; lastPod names the last one's pod.
func attempts(in []v1alpha1.Attempt, lastPod string) []Attempt {
	out := make([]Attempt, 0, len(in))
	for i, a := range in {
		at := Attempt{
			Number:   a.Number,
			Job:      a.JobName,
			Start:    utc(a.StartTime),
			End:      utc(a.EndTime),
			ExitCode: copyInt32(a.ExitCode),
			Reason:   a.Reason,
		}
		if i == len(in)-1 {
			at.Pod = lastPod
		}
		out = append(out, at)
	}
	return out
}

// utc returns t in UTC, nil when t is nil.
func utc(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// copyInt32 returns a copy of p, so an event shares no memory with the execution.
func copyInt32(p *int32) *int32 {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
