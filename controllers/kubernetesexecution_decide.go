package controllers

import (
	"fmt"
	"math"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
)

// observation is everything the reconciler learned about an execution's world before deciding:
// the facts are gathered first (observe), a pure function turns them into the new status and the
// effects (decide), and the effects are carried out before the status is written once (act).
type observation struct {
	// Now is the time of the observation.
	Now time.Time
	// Template is the execution's ActionTemplate, nil when it no longer exists.
	Template *v1alpha1.ActionTemplate
	// Refusal says why no new attempt may start (the template changed or is not ready, the
	// execution does not fit it or carries no admission record); nil when one may.
	Refusal *refusal
	// WaitingForTemplate is set while the template's controller has not checked its current
	// generation and no attempt was made yet: the message to show while the execution waits.
	WaitingForTemplate string
	// Attempt is what was observed of the attempt in flight, nil when none is.
	Attempt *attemptFacts
	// Jitter is a random number in [0, 1) that stretches the next backoff.
	Jitter float64
	// Gate, before the first attempt, is what holds it back (approval, the queue), nil when it
	// may start.
	Gate *gate
}

// refusal is why no further attempt of an execution may start. An attempt already running is
// still observed to its end, so its outcome is never lost.
type refusal struct {
	reason, message string
}

// attemptFacts is what was observed of the Job of the attempt in flight and of the pods it
// controls.
type attemptFacts struct {
	// JobGone is true when the API server confirms that the attempt's Job no longer exists.
	JobGone bool
	// StartTime is when the Job started.
	StartTime *metav1.Time
	// Finished is the Job's Complete or Failed condition once it is True, else nil.
	Finished *batchv1.JobCondition
	// CompletionTime is when the Job completed, if it did.
	CompletionTime *metav1.Time
	// Terminated is the action container's latest terminated state, nil when no pod shows one.
	Terminated *corev1.ContainerStateTerminated
	// PodDeleted is set when the Job failed because its pod was deleted while the action ran
	// (finishedPods), not because the action failed.
	PodDeleted bool
	// ImagePull is set while the Job runs and a pod's action container waits on an image that
	// cannot be pulled.
	ImagePull *imagePullFailure
}

// imagePullFailure is a container waiting on an image that a kubelet cannot get or start.
type imagePullFailure struct {
	Reason, Image, Message string
}

// decision is what decide concludes: the new status and the effects that must follow.
type decision struct {
	// Status is the execution's new status.
	Status v1alpha1.KubernetesExecutionStatus
	// StartAttempt is the number of the attempt whose Job must be started now, 0 for none.
	StartAttempt int32
	// RequeueAfter is when time alone would change the outcome (the end of a backoff, the
	// timeout), 0 when nothing waits on the clock.
	RequeueAfter time.Duration
}

// decide computes an execution's next status from its current one and what was observed, and
// says which effects must follow. It calls no API and reads no clock: the same inputs always
// give the same decision. obj is not changed.
func decide(obj *v1alpha1.KubernetesExecution, o observation, backoff Backoff) decision {
	work := obj.DeepCopy()
	if o.WaitingForTemplate != "" {
		setPhase(work, v1alpha1.PhasePending, v1alpha1.ReasonWaitingForTemplate, o.WaitingForTemplate, o.Now)
		return decision{Status: work.Status}
	}
	if o.Gate != nil {
		return decision{Status: work.Status, RequeueAfter: decideGate(work, o.Gate, o.Now)}
	}
	// The timeout counts from here: the gate is open.
	if work.Status.StartTime == nil {
		work.Status.StartTime = &metav1.Time{Time: o.Now}
	}
	decideCurrentAttempt(work, o, backoff)
	decideTimeout(work, o)
	d := decision{StartAttempt: decideNextAttempt(work, o)}
	d.Status = work.Status
	d.RequeueAfter = requeueAfter(work, o.Template, o.Now)
	return d
}

// decideCurrentAttempt records how the attempt in flight stands: running, or ended with its
// outcome (success completes the execution; a failure leads to a retry or to Failed).
func decideCurrentAttempt(obj *v1alpha1.KubernetesExecution, o observation, backoff Backoff) {
	a := lastAttempt(obj)
	f := o.Attempt
	if a == nil || a.Finished() || f == nil {
		return
	}
	now := o.Now
	if f.JobGone {
		a.EndTime, a.Reason = &metav1.Time{Time: now}, v1alpha1.ReasonJobDeleted
		a.Message = fmt.Sprintf("Job %s was deleted before it finished", a.JobName)
		afterFailure(obj, o, a, outcome{Error: a.Message}, backoff)
		return
	}
	if f.Finished == nil {
		if p := f.ImagePull; p != nil {
			a.StartTime = f.StartTime
			a.EndTime, a.Reason = &metav1.Time{Time: now}, v1alpha1.ReasonImagePullFailed
			a.Message = truncate(fmt.Sprintf("%s: image %s: %s", p.Reason, p.Image, p.Message))
			afterFailure(obj, o, a, outcome{Error: a.Message}, backoff)
			return
		}
		// While the attempt runs its status stays as startedAttempt recorded it: the Job's start
		// is recorded with the attempt's end, in the same write, not in one of its own (the
		// Job's status shows it meanwhile).
		setPhase(obj, v1alpha1.PhaseRunning, v1alpha1.ReasonProgressing,
			fmt.Sprintf("Attempt %d of %d is running as Job %s", a.Number, validation.MaxRetries(obj, o.Template)+1, a.JobName), now)
		return
	}

	a.StartTime = f.StartTime
	out := attemptOutcome(f, a)
	a.EndTime = &f.Finished.LastTransitionTime
	if f.CompletionTime != nil {
		a.EndTime = f.CompletionTime
	}
	deadlineExceeded := f.Finished.Reason == batchv1.JobReasonDeadlineExceeded
	disrupted := disruption(f)
	if disrupted != "" {
		out.Success, out.Error = false, "the action's pod was disrupted: "+disrupted
	}
	obj.Status.Result = &v1alpha1.ExecutionResult{
		Success: out.Success, Output: out.Output, Error: out.Error, Data: out.Data,
		StartTime: a.StartTime, EndTime: a.EndTime, ExitCode: a.ExitCode,
		ResourceUsage: out.ResourceUsage,
	}
	switch {
	case out.Success:
		a.Reason, a.Message = v1alpha1.ReasonSucceeded, truncate(out.Output)
		setPhase(obj, v1alpha1.PhaseCompleted, v1alpha1.ReasonSucceeded,
			fmt.Sprintf("The action succeeded on attempt %d", a.Number), now)
	case deadlineExceeded:
		a.Reason, a.Message = v1alpha1.ReasonDeadlineExceeded, f.Finished.Message
		timeOut(obj, now)
	case disrupted != "":
		a.Reason, a.Message = v1alpha1.ReasonPodDisrupted, truncate(disrupted)
		afterFailure(obj, o, a, out, backoff)
	default:
		a.Reason, a.Message = v1alpha1.ReasonActionFailed, truncate(out.Error)
		afterFailure(obj, o, a, out, backoff)
	}
}

// disruption says how a finished attempt's pod was lost to something other than its action,
// "" when it was not: evicted, preempted or lost with its node (the Job's pod failure policy
// failed the Job: only a non-idempotent action's Job fails so, see buildJob), or deleted while
// it ran (finishedPods). A pod the Job controller stopped at the deadline is not a disruption.
func disruption(f *attemptFacts) string {
	switch {
	case f.Finished.Type != batchv1.JobFailed || f.Finished.Reason == batchv1.JobReasonDeadlineExceeded:
		return ""
	case f.Finished.Reason == batchv1.JobReasonPodFailurePolicy:
		return f.Finished.Message
	case f.PodDeleted:
		return "the pod was deleted before the action ended"
	}
	return ""
}

// attemptOutcome reads a finished attempt's outcome from its action container's termination
// state, and records the exit code on the attempt. Without a pod to read (removed, or never
// started) the Job's condition is all there is.
func attemptOutcome(f *attemptFacts, a *v1alpha1.Attempt) outcome {
	complete := f.Finished.Type == batchv1.JobComplete
	if f.Terminated == nil {
		if complete {
			return outcome{Success: true}
		}
		return outcome{Error: strings.TrimSpace(f.Finished.Reason + ": " + f.Finished.Message)}
	}
	a.ExitCode = &f.Terminated.ExitCode
	out := parseOutcome(f.Terminated.Message, f.Terminated.ExitCode)
	if !complete {
		out.Success = false
		if out.Error == "" {
			out.Error = strings.TrimSpace(f.Finished.Reason + ": " + f.Finished.Message)
		}
	}
	return out
}

// afterFailure decides what follows a failed attempt: a retry after backoff when the action is
// idempotent, the failure retryable, retries are left and nothing refuses a new attempt;
// otherwise Failed.
func afterFailure(obj *v1alpha1.KubernetesExecution, o observation, a *v1alpha1.Attempt, out outcome, backoff Backoff) {
	now := o.Now
	if r := obj.Status.Result; r == nil || r.Success || r.Error == "" {
		obj.Status.Result = &v1alpha1.ExecutionResult{Error: out.Error, StartTime: a.StartTime, EndTime: a.EndTime, ExitCode: a.ExitCode}
	}
	if o.Refusal != nil {
		failExecution(obj, o.Refusal.reason, fmt.Sprintf("attempt %d failed (%s) and no further attempt may start: %s", a.Number, out.Error, o.Refusal.message), now)
		return
	}
	if reason := nonRetryable(o.Template, a); reason != "" {
		// A disruption is the execution's reason: nothing the action did ended it.
		failReason := v1alpha1.ReasonNonRetryable
		if a.Reason == v1alpha1.ReasonPodDisrupted {
			failReason = v1alpha1.ReasonPodDisrupted
		}
		failExecution(obj, failReason, fmt.Sprintf("attempt %d failed and %s: %s", a.Number, reason, out.Error), now)
		return
	}
	retries := attemptCount(obj) - 1
	if limit := validation.MaxRetries(obj, o.Template); retries >= limit {
		failExecution(obj, v1alpha1.ReasonMaxRetriesExceeded,
			fmt.Sprintf("max retries exceeded: %s failed (maxRetries %d); last error: %s", attemptsWord(len(obj.Status.Attempts)), limit, out.Error), now)
		return
	}
	delay := backoff.Delay(retries+1, func() float64 { return o.Jitter })
	obj.Status.NextRetryTime = &metav1.Time{Time: now.Add(delay)}
	setPhase(obj, v1alpha1.PhaseRetrying, v1alpha1.ReasonBackingOff,
		fmt.Sprintf("Attempt %d failed (%s); attempt %d starts in %s", a.Number, out.Error, a.Number+1, delay.Round(time.Millisecond)), now)
}

// nonRetryable says why a failed attempt must not be retried, or "" when it may be.
func nonRetryable(tpl *v1alpha1.ActionTemplate, a *v1alpha1.Attempt) string {
	p := tpl.Spec.RetryPolicy
	if p.Idempotent != nil && !*p.Idempotent {
		return fmt.Sprintf("action %q is not idempotent", tpl.Name)
	}
	// A disrupted attempt's exit code is the kill signal's, not the action's.
	if a.ExitCode != nil && a.Reason != v1alpha1.ReasonPodDisrupted {
		for _, c := range p.NonRetryableExitCodes {
			if c == *a.ExitCode {
				return fmt.Sprintf("exit code %d means do not retry", c)
			}
		}
	}
	return ""
}

// decideTimeout ends the execution as TimedOut once its timeout has passed. The Job of an
// attempt stopped this way is deleted once this is written (stopAbandonedJobs).
func decideTimeout(obj *v1alpha1.KubernetesExecution, o observation) {
	if obj.Status.Phase.IsTerminal() || o.Now.Before(deadline(obj, o.Template)) {
		return
	}
	if a := lastAttempt(obj); a != nil && !a.Finished() {
		if f := o.Attempt; f != nil && !f.JobGone {
			a.StartTime = f.StartTime
		}
		a.EndTime, a.Reason = &metav1.Time{Time: o.Now}, v1alpha1.ReasonTimedOut
		a.Message = "stopped at the execution's timeout"
	}
	timeOut(obj, o.Now)
}

// timeOut records TimedOut.
func timeOut(obj *v1alpha1.KubernetesExecution, now time.Time) {
	message := fmt.Sprintf("execution timed out after %s", ranFor(obj, now))
	if obj.Status.Result == nil {
		obj.Status.Result = &v1alpha1.ExecutionResult{}
	}
	obj.Status.Result.Success, obj.Status.Result.Error = false, message
	obj.Status.NextRetryTime = nil
	setPhase(obj, v1alpha1.PhaseTimedOut, v1alpha1.ReasonTimedOut, message, now)
}

// decideNextAttempt returns the number of the attempt due now (the first, or a retry whose
// backoff has passed), or 0. With no attempt in flight, a refusal fails the execution at once,
// without waiting for the backoff.
func decideNextAttempt(obj *v1alpha1.KubernetesExecution, o observation) int32 {
	if obj.Status.Phase.IsTerminal() {
		return 0
	}
	a := lastAttempt(obj)
	if o.Refusal != nil && (a == nil || a.Finished()) {
		failExecution(obj, o.Refusal.reason, o.Refusal.message, o.Now)
		return 0
	}
	switch {
	case a == nil:
	case a.Finished() && obj.Status.Phase == v1alpha1.PhaseRetrying && obj.Status.NextRetryTime != nil && !o.Now.Before(obj.Status.NextRetryTime.Time):
	default:
		return 0
	}
	return attemptCount(obj) + 1
}

// requeueAfter is when time alone would change the outcome: the end of a backoff or the
// timeout; 0 once the execution has ended. Job and pod changes arrive through watches.
func requeueAfter(obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate, now time.Time) time.Duration {
	if obj.Status.Phase.IsTerminal() {
		return 0
	}
	wake := deadline(obj, tpl)
	if t := obj.Status.NextRetryTime; t != nil && t.Time.Before(wake) {
		wake = t.Time
	}
	return max(wake.Sub(now), time.Millisecond)
}

// startedAttempt records that attempt number runs as Job jobName.
func startedAttempt(obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate, number int32, jobName string, now time.Time) {
	obj.Status.Attempts = append(obj.Status.Attempts, v1alpha1.Attempt{Number: number, JobName: jobName})
	obj.Status.NextRetryTime = nil
	// The result exists from the first attempt's start: the upstream controller reads its
	// start time without a nil check.
	if obj.Status.Result == nil {
		obj.Status.Result = &v1alpha1.ExecutionResult{StartTime: &metav1.Time{Time: now}}
	}
	setPhase(obj, v1alpha1.PhaseRunning, v1alpha1.ReasonProgressing,
		fmt.Sprintf("Attempt %d of %d is running as Job %s", number, validation.MaxRetries(obj, tpl)+1, jobName), now)
}

// attemptCount is the number of attempts recorded, as the API's int32. The CRD allows at most
// 11 (status.attempts MaxItems); the clamp keeps the conversion exact whatever the list holds.
func attemptCount(obj *v1alpha1.KubernetesExecution) int32 {
	return int32(min(len(obj.Status.Attempts), math.MaxInt32))
}

// deadline is when the execution times out. Without its template (deleted while an attempt
// runs), the execution's own timeout or the fallback applies; the Job's active deadline stops
// the attempt in any case.
func deadline(obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate) time.Time {
	if tpl == nil {
		tpl = &v1alpha1.ActionTemplate{}
	}
	return obj.Status.StartTime.Add(validation.Timeout(obj, tpl))
}
