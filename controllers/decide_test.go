package controllers

import (
	"fmt"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// The decide step's table: every state an execution can be in when it is reconciled, times every
// outcome the attempt in flight can have, the retry budget, the clock against the timeout (and
// against the backoff), idempotency and a refusal of new attempts. The expected decision is
// spelled out by the rules below, one per dimension, so a case that fails names the rule.

const (
	tableTimeout = 10 * time.Minute
	tableBackoff = 30 * time.Second
	tableRetries = 2
)

var (
	t0        = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tableJobs = Backoff{Base: tableBackoff, Max: time.Hour}
)

// state is where the execution stands before the pass.
type state string

const (
	stateNew      state = "new"      // no attempt yet
	stateRunning  state = "running"  // an attempt in flight
	stateRetrying state = "retrying" // the last attempt failed; the next waits for its backoff
)

// clockAt is where now falls against the deadline (and, for retrying, the backoff's end).
type clockAt string

const (
	beforeDeadline  clockAt = "before the deadline"
	atDeadline      clockAt = "exactly at the deadline"
	pastDeadline    clockAt = "past the deadline"
	beforeBackoff   clockAt = "before the backoff ends"
	atBackoff       clockAt = "exactly when the backoff ends"
	backoffPastDead clockAt = "backoff ended, past the deadline"
)

// observed is what the attempt in flight did.
type observed struct {
	name  string
	facts func(now time.Time) *attemptFacts
	// ends: the attempt ended (else it still runs).
	ends bool
	// succeeds: it ended in success.
	succeeds bool
	// timesOut: the Job controller stopped it at its deadline.
	timesOut bool
	// final: its failure may not be retried whatever the template says (exit code 2).
	final bool
	// reason is the attempt's recorded reason when it ended.
	reason string
}

func finished(typ batchv1.JobConditionType, reason string, at time.Time) *batchv1.JobCondition {
	return &batchv1.JobCondition{Type: typ, Status: corev1.ConditionTrue, Reason: reason, Message: reason + " message", LastTransitionTime: metav1.NewTime(at)}
}

func terminated(code int32, message string) *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{ExitCode: code, Message: message}
}

var outcomes = []observed{
	{name: "still running", facts: func(time.Time) *attemptFacts { return &attemptFacts{} }},
	{name: "image cannot be pulled", ends: true, reason: v1alpha1.ReasonImagePullFailed, facts: func(time.Time) *attemptFacts {
		return &attemptFacts{ImagePull: &imagePullFailure{Reason: "ErrImagePull", Image: "x", Message: "no such image"}}
	}},
	{name: "Job deleted", ends: true, reason: v1alpha1.ReasonJobDeleted, facts: func(time.Time) *attemptFacts { return &attemptFacts{JobGone: true} }},
	{name: "succeeded", ends: true, succeeds: true, reason: v1alpha1.ReasonSucceeded, facts: func(now time.Time) *attemptFacts {
		return &attemptFacts{Finished: finished(batchv1.JobComplete, "Completed", now), Terminated: terminated(0, `{"success":true,"output":"done"}`)}
	}},
	{name: "completed without a pod to read", ends: true, succeeds: true, reason: v1alpha1.ReasonSucceeded, facts: func(now time.Time) *attemptFacts {
		return &attemptFacts{Finished: finished(batchv1.JobComplete, "Completed", now)}
	}},
	{name: "exit 0 but reported success=false", ends: true, reason: v1alpha1.ReasonActionFailed, facts: func(now time.Time) *attemptFacts {
		return &attemptFacts{Finished: finished(batchv1.JobComplete, "Completed", now), Terminated: terminated(0, `{"success":false,"error":"refused"}`)}
	}},
	{name: "failed with exit 1", ends: true, reason: v1alpha1.ReasonActionFailed, facts: func(now time.Time) *attemptFacts {
		return &attemptFacts{Finished: finished(batchv1.JobFailed, "BackoffLimitExceeded", now), Terminated: terminated(1, `{"success":false,"error":"try again"}`)}
	}},
	{name: "failed with exit 2 (final)", ends: true, final: true, reason: v1alpha1.ReasonActionFailed, facts: func(now time.Time) *attemptFacts {
		return &attemptFacts{Finished: finished(batchv1.JobFailed, "BackoffLimitExceeded", now), Terminated: terminated(2, `{"success":false,"error":"never"}`)}
	}},
	{name: "failed without a pod to read", ends: true, reason: v1alpha1.ReasonActionFailed, facts: func(now time.Time) *attemptFacts {
		return &attemptFacts{Finished: finished(batchv1.JobFailed, "BackoffLimitExceeded", now)}
	}},
	{name: "stopped at the Job's deadline", ends: true, timesOut: true, reason: v1alpha1.ReasonDeadlineExceeded, facts: func(now time.Time) *attemptFacts {
		return &attemptFacts{Finished: finished(batchv1.JobFailed, batchv1.JobReasonDeadlineExceeded, now), Terminated: terminated(137, "")}
	}},
	{name: "pod disrupted", ends: true, reason: v1alpha1.ReasonPodDisrupted, facts: func(now time.Time) *attemptFacts {
		return &attemptFacts{Finished: finished(batchv1.JobFailed, batchv1.JobReasonPodFailurePolicy, now), Terminated: terminated(143, "")}
	}},
	{name: "pod deleted while it ran", ends: true, reason: v1alpha1.ReasonPodDisrupted, facts: func(now time.Time) *attemptFacts {
		return &attemptFacts{Finished: finished(batchv1.JobFailed, "BackoffLimitExceeded", now), Terminated: terminated(143, ""), PodDeleted: true}
	}},
	// The kill's exit code is not the action's: a non-retryable code does not count.
	{name: "pod deleted, killed with a non-retryable exit code", ends: true, reason: v1alpha1.ReasonPodDisrupted, facts: func(now time.Time) *attemptFacts {
		return &attemptFacts{Finished: finished(batchv1.JobFailed, "BackoffLimitExceeded", now), Terminated: terminated(2, ""), PodDeleted: true}
	}},
	{name: "pod deleted and gone", ends: true, reason: v1alpha1.ReasonPodDisrupted, facts: func(now time.Time) *attemptFacts {
		return &attemptFacts{Finished: finished(batchv1.JobFailed, "BackoffLimitExceeded", now), PodDeleted: true}
	}},
}

// tableCase is one combination.
type tableCase struct {
	state      state
	outcome    observed
	attempts   int32 // attempts made before this pass
	clock      clockAt
	idempotent bool
	refused    bool
}

func (c tableCase) String() string {
	return fmt.Sprintf("%s/%s/attempts=%d/%s/idempotent=%v/refused=%v", c.state, c.outcome.name, c.attempts, c.clock, c.idempotent, c.refused)
}

// want is the expected decision.
type want struct {
	phase        v1alpha1.ExecutionPhase
	reason       string // the Ready condition's reason
	attemptEnd   string // the in-flight attempt's reason after the pass, "" if it still runs
	startAttempt int32
	nextRetry    bool // a NextRetryTime is set
	requeue      bool
}

// expect states the rules.
func expect(c tableCase) want {
	now, deadline := clockFor(c)
	timedOut := !now.Before(deadline)
	budgetLeft := c.attempts <= tableRetries // attempts made so far include the one in flight
	failure := func(w want) want {
		switch {
		case c.refused:
			w.phase, w.reason = v1alpha1.PhaseFailed, v1alpha1.ReasonTemplateChanged
		case !c.idempotent && c.outcome.reason == v1alpha1.ReasonPodDisrupted:
			// A disruption is the execution's reason when the action may not run again.
			w.phase, w.reason = v1alpha1.PhaseFailed, v1alpha1.ReasonPodDisrupted
		case !c.idempotent || c.outcome.final:
			w.phase, w.reason = v1alpha1.PhaseFailed, v1alpha1.ReasonNonRetryable
		case !budgetLeft:
			w.phase, w.reason = v1alpha1.PhaseFailed, v1alpha1.ReasonMaxRetriesExceeded
		default:
			w.phase, w.reason, w.nextRetry = v1alpha1.PhaseRetrying, v1alpha1.ReasonBackingOff, true
		}
		return w
	}
	var w want
	switch c.state {
	case stateNew, stateRetrying:
		due := c.state == stateNew || c.clock != beforeBackoff
		switch {
		case timedOut:
			w.phase, w.reason = v1alpha1.PhaseTimedOut, v1alpha1.ReasonTimedOut
		case c.refused:
			w.phase, w.reason = v1alpha1.PhaseFailed, v1alpha1.ReasonTemplateChanged
		case due:
			w.startAttempt = c.attempts + 1
			w.phase, w.reason = v1alpha1.PhaseRetrying, v1alpha1.ReasonBackingOff // the act step records Running
			if c.state == stateNew {
				w.phase, w.reason = "", ""
			}
		default:
			w.phase, w.reason, w.nextRetry = v1alpha1.PhaseRetrying, v1alpha1.ReasonBackingOff, true
		}
		if w.startAttempt > 0 {
			w.nextRetry = c.state == stateRetrying
		}
	case stateRunning:
		o := c.outcome
		switch {
		case !o.ends:
			w.phase, w.reason = v1alpha1.PhaseRunning, v1alpha1.ReasonProgressing
		case o.succeeds:
			w.phase, w.reason = v1alpha1.PhaseCompleted, v1alpha1.ReasonSucceeded
		case o.timesOut:
			w.phase, w.reason = v1alpha1.PhaseTimedOut, v1alpha1.ReasonTimedOut
		default:
			w = failure(w)
		}
		w.attemptEnd = o.reason
		if timedOut && !w.phase.IsTerminal() {
			// The timeout ends whatever is still going: the running attempt, or the wait for a retry.
			if !o.ends {
				w.attemptEnd = v1alpha1.ReasonTimedOut
			}
			w.phase, w.reason, w.nextRetry = v1alpha1.PhaseTimedOut, v1alpha1.ReasonTimedOut, false
		}
	}
	w.requeue = !w.phase.IsTerminal()
	return w
}

// clockFor places now and the deadline for a case: the execution started at t0.
func clockFor(c tableCase) (now, deadline time.Time) {
	deadline = t0.Add(tableTimeout)
	switch c.clock {
	case beforeDeadline:
		return deadline.Add(-time.Minute), deadline
	case atDeadline:
		return deadline, deadline
	case pastDeadline:
		return deadline.Add(time.Second), deadline
	case beforeBackoff:
		return nextRetryAt().Add(-time.Millisecond), deadline
	case atBackoff:
		return nextRetryAt(), deadline
	case backoffPastDead:
		return deadline.Add(time.Minute), deadline
	}
	panic(c.clock)
}

func nextRetryAt() time.Time { return t0.Add(5 * time.Minute) }

// build makes the execution, its template and the observation of a case.
func build(c tableCase) (*v1alpha1.KubernetesExecution, observation) {
	now, _ := clockFor(c)
	tpl := &v1alpha1.ActionTemplate{Spec: v1alpha1.ActionTemplateSpec{
		DefaultTimeout: &metav1.Duration{Duration: tableTimeout},
		RetryPolicy:    v1alpha1.RetryPolicy{Idempotent: ptr.To(c.idempotent), NonRetryableExitCodes: []int32{2}},
	}}
	tpl.Name = "act"
	obj := &v1alpha1.KubernetesExecution{Spec: v1alpha1.KubernetesExecutionSpec{MaxRetries: ptr.To[int32](tableRetries)}}
	obj.Name, obj.Generation = "fix", 1
	obj.Status.StartTime = &metav1.Time{Time: t0}
	for n := int32(1); n <= c.attempts; n++ {
		a := v1alpha1.Attempt{Number: n, JobName: JobName(obj.Name, n)}
		if n < c.attempts || c.state == stateRetrying {
			a.EndTime, a.Reason = &metav1.Time{Time: t0.Add(time.Minute)}, v1alpha1.ReasonActionFailed
		}
		obj.Status.Attempts = append(obj.Status.Attempts, a)
	}
	switch c.state {
	case stateRunning:
		setPhase(obj, v1alpha1.PhaseRunning, v1alpha1.ReasonProgressing, "running", t0)
	case stateRetrying:
		setPhase(obj, v1alpha1.PhaseRetrying, v1alpha1.ReasonBackingOff, "backing off", t0)
		obj.Status.NextRetryTime = &metav1.Time{Time: nextRetryAt()}
	}
	o := observation{Now: now, Template: tpl, Jitter: 0.5}
	if c.state == stateRunning {
		o.Attempt = c.outcome.facts(now)
	}
	if c.refused {
		o.Refusal = &refusal{v1alpha1.ReasonTemplateChanged, "the template was edited"}
	}
	return obj, o
}

func tableCases() []tableCase {
	var cases []tableCase
	for _, idempotent := range []bool{true, false} {
		for _, refused := range []bool{false, true} {
			// A new execution: only the clock matters.
			for _, clock := range []clockAt{beforeDeadline, atDeadline, pastDeadline} {
				cases = append(cases, tableCase{state: stateNew, clock: clock, idempotent: idempotent, refused: refused})
			}
			// Waiting for a retry: the backoff against the clock, the deadline, the budget used.
			for _, attempts := range []int32{1, tableRetries} {
				for _, clock := range []clockAt{beforeBackoff, atBackoff, backoffPastDead} {
					cases = append(cases, tableCase{state: stateRetrying, attempts: attempts, clock: clock, idempotent: idempotent, refused: refused})
				}
			}
			// An attempt in flight: every outcome, with retries left and with none, at every clock.
			for _, o := range outcomes {
				for _, attempts := range []int32{1, tableRetries + 1} {
					for _, clock := range []clockAt{beforeDeadline, atDeadline, pastDeadline} {
						cases = append(cases, tableCase{state: stateRunning, outcome: o, attempts: attempts, clock: clock, idempotent: idempotent, refused: refused})
					}
				}
			}
		}
	}
	return cases
}

func TestDecideTable(t *testing.T) {
	cases := tableCases()
	t.Logf("%d cases", len(cases))
	for _, c := range cases {
		t.Run(c.String(), func(t *testing.T) {
			obj, o := build(c)
			before := obj.DeepCopy()
			d := decide(obj, o, tableJobs)
			if !equalExecutions(before, obj) {
				t.Fatal("decide changed its input")
			}
			w := expect(c)
			ready := conditionOf(d.Status, v1alpha1.ConditionReady)
			if c.state == stateNew && w.phase == "" {
				// Nothing decided but to start the first attempt; act records Running.
				if d.Status.Phase != "" || ready != nil {
					t.Errorf("phase %q, Ready %v; want none before the first attempt starts", d.Status.Phase, ready)
				}
			} else if d.Status.Phase != w.phase || ready == nil || ready.Reason != w.reason {
				t.Errorf("phase %q reason %v; want %q %q", d.Status.Phase, ready, w.phase, w.reason)
			}
			if d.StartAttempt != w.startAttempt {
				t.Errorf("start attempt %d, want %d", d.StartAttempt, w.startAttempt)
			}
			if got := d.Status.NextRetryTime != nil; got != w.nextRetry {
				t.Errorf("next retry set %v, want %v (%v)", got, w.nextRetry, d.Status.NextRetryTime)
			}
			if got := d.RequeueAfter > 0; got != w.requeue {
				t.Errorf("requeue after %s, want a requeue: %v", d.RequeueAfter, w.requeue)
			}
			if c.state == stateRunning {
				a := d.Status.Attempts[len(d.Status.Attempts)-1]
				if a.Reason != w.attemptEnd {
					t.Errorf("attempt reason %q, want %q", a.Reason, w.attemptEnd)
				}
				if (a.EndTime != nil) != (w.attemptEnd != "") {
					t.Errorf("attempt end time %v with reason %q", a.EndTime, a.Reason)
				}
			}
			if d.Status.Phase.IsTerminal() && d.Status.CompletionTime == nil {
				t.Error("a terminal phase without a completion time")
			}
			if w.nextRetry && d.StartAttempt == 0 {
				if c.state == stateRunning {
					// A fresh backoff: the base doubled per retry already made.
					wantDelay := tableJobs.Delay(c.attempts, func() float64 { return o.Jitter })
					if got := d.Status.NextRetryTime.Sub(o.Now); got != wantDelay {
						t.Errorf("backoff %s, want %s", got, wantDelay)
					}
					if d.RequeueAfter != wantDelay {
						t.Errorf("requeue after %s, want the backoff %s", d.RequeueAfter, wantDelay)
					}
				} else if d.RequeueAfter != nextRetryAt().Sub(o.Now) {
					t.Errorf("requeue after %s, want the rest of the backoff %s", d.RequeueAfter, nextRetryAt().Sub(o.Now))
				}
			}
		})
	}
}

// TestDecideWaitsForTheTemplate: an execution whose template has not been checked yet waits in
// Pending and is not started, timed or requeued (the template's watch wakes it).
func TestDecideWaitsForTheTemplate(t *testing.T) {
	obj := &v1alpha1.KubernetesExecution{}
	d := decide(obj, observation{Now: t0, WaitingForTemplate: "waiting for ActionTemplate \"act\" to be checked"}, tableJobs)
	if d.Status.Phase != v1alpha1.PhasePending || d.StartAttempt != 0 || d.RequeueAfter != 0 || d.Status.StartTime != nil {
		t.Fatalf("decision %+v", d)
	}
	if c := conditionOf(d.Status, v1alpha1.ConditionReady); c == nil || c.Reason != v1alpha1.ReasonWaitingForTemplate {
		t.Fatalf("Ready %v", c)
	}
}

// TestDecideRecordsTheOutcome checks what a finished attempt leaves in the status for the upstream
// to read: the result with the action's output and data, the exit code and the times.
func TestDecideRecordsTheOutcome(t *testing.T) {
	c := tableCase{state: stateRunning, attempts: 1, clock: beforeDeadline, idempotent: true, outcome: observed{facts: func(now time.Time) *attemptFacts {
		return &attemptFacts{
			StartTime: &metav1.Time{Time: t0.Add(time.Second)}, CompletionTime: &metav1.Time{Time: now},
			Finished:   finished(batchv1.JobComplete, "Completed", now),
			Terminated: terminated(0, `{"success":true,"output":"scaled","data":{"replicas":3}}`),
		}
	}}}
	obj, o := build(c)
	d := decide(obj, o, tableJobs)
	r := d.Status.Result
	if r == nil || !r.Success || r.Output != "scaled" || string(r.Data.Raw) != `{"replicas":3}` || *r.ExitCode != 0 ||
		!r.StartTime.Equal(&metav1.Time{Time: t0.Add(time.Second)}) || !r.EndTime.Time.Equal(o.Now) {
		t.Fatalf("result %+v", r)
	}
	if a := d.Status.Attempts[0]; a.Message != "scaled" || *a.ExitCode != 0 {
		t.Fatalf("attempt %+v", a)
	}
}

// TestDecideRecordsResourceUsage checks that the resource usage a finished attempt's action
// reported in its termination message reaches status.result, on success and on failure, and that
// a result without it leaves none.
func TestDecideRecordsResourceUsage(t *testing.T) {
	usage := `"resourceUsage":{"cpuMillis":230,"peakMemoryBytes":41943040}`
	tests := []struct {
		name      string
		job       batchv1.JobConditionType
		exitCode  int32
		message   string
		wantPhase v1alpha1.ExecutionPhase
		wantUsage *v1alpha1.ResourceUsage
	}{
		{"succeeded", batchv1.JobComplete, 0, `{"success":true,"output":"scaled",` + usage + `}`,
			v1alpha1.PhaseCompleted, &v1alpha1.ResourceUsage{CPUMillis: 230, PeakMemoryBytes: 41943040}},
		{"failed, retry next", batchv1.JobFailed, 1, `{"success":false,"error":"conflict",` + usage + `}`,
			v1alpha1.PhaseRetrying, &v1alpha1.ResourceUsage{CPUMillis: 230, PeakMemoryBytes: 41943040}},
		{"image that does not report it", batchv1.JobComplete, 0, `{"success":true,"output":"scaled"}`,
			v1alpha1.PhaseCompleted, nil},
		{"log tail", batchv1.JobFailed, 1, "panic: boom", v1alpha1.PhaseRetrying, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tableCase{state: stateRunning, attempts: 1, clock: beforeDeadline, idempotent: true, outcome: observed{facts: func(now time.Time) *attemptFacts {
				return &attemptFacts{Finished: finished(tt.job, "Finished", now), Terminated: terminated(tt.exitCode, tt.message)}
			}}}
			obj, o := build(c)
			d := decide(obj, o, tableJobs)
			if d.Status.Phase != tt.wantPhase {
				t.Fatalf("phase %q, want %q", d.Status.Phase, tt.wantPhase)
			}
			r := d.Status.Result
			if r == nil {
				t.Fatal("no result")
			}
			if got := r.ResourceUsage; (got == nil) != (tt.wantUsage == nil) || (got != nil && *got != *tt.wantUsage) {
				t.Fatalf("result.resourceUsage %+v, want %+v", got, tt.wantUsage)
			}
		})
	}
}

func conditionOf(s v1alpha1.KubernetesExecutionStatus, typ string) *metav1.Condition {
	for i := range s.Conditions {
		if s.Conditions[i].Type == typ {
			return &s.Conditions[i]
		}
	}
	return nil
}

func equalExecutions(a, b *v1alpha1.KubernetesExecution) bool {
	return equality.Semantic.DeepEqual(a, b)
}
