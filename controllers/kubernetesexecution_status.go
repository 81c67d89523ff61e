package controllers

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// executionConditions returns the conditions an execution has in phase, with reason and message
// explaining it: Ready always; Reconciling only while attempts are in flight; Stalled only once
// the execution failed for good. Together they compute to kstatus Current once Completed.
func executionConditions(phase v1alpha1.ExecutionPhase, reason, message string, generation int64) []metav1.Condition {
	ready := metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse,
		Reason: reason, Message: message, ObservedGeneration: generation,
	}
	switch phase {
	case v1alpha1.PhaseCompleted:
		ready.Status = metav1.ConditionTrue
		return []metav1.Condition{ready}
	case v1alpha1.PhaseFailed, v1alpha1.PhaseTimedOut:
		stalled := ready
		stalled.Type, stalled.Status = v1alpha1.ConditionStalled, metav1.ConditionTrue
		return []metav1.Condition{ready, stalled}
	default:
		reconciling := ready
		reconciling.Type, reconciling.Status = v1alpha1.ConditionReconciling, metav1.ConditionTrue
		return []metav1.Condition{ready, reconciling}
	}
}

// setPhase records phase with its reason and message, and makes the conditions match. Conditions
// that no longer apply are removed; the ones kept keep their transition time when their status
// does not change.
func setPhase(obj *v1alpha1.KubernetesExecution, phase v1alpha1.ExecutionPhase, reason, message string, now time.Time) {
	obj.Status.Phase = phase
	want := executionConditions(phase, reason, message, obj.Generation)
	keep := map[string]bool{}
	for _, c := range want {
		keep[c.Type] = true
		c.LastTransitionTime = metav1.NewTime(now)
		meta.SetStatusCondition(&obj.Status.Conditions, c)
	}
	for _, t := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionReconciling, v1alpha1.ConditionStalled} {
		if !keep[t] {
			meta.RemoveStatusCondition(&obj.Status.Conditions, t)
		}
	}
	if phase.IsTerminal() && obj.Status.CompletionTime == nil {
		obj.Status.CompletionTime = &metav1.Time{Time: now}
	}
}

// failExecution ends the execution as Failed with reason and message, and records the message
// as the result's error so the upstream reads why.
func failExecution(obj *v1alpha1.KubernetesExecution, reason, message string, now time.Time) {
	if obj.Status.Result == nil {
		obj.Status.Result = &v1alpha1.ExecutionResult{}
	}
	obj.Status.Result.Success = false
	obj.Status.Result.Error = message
	obj.Status.NextRetryTime = nil
	setPhase(obj, v1alpha1.PhaseFailed, reason, message, now)
}

// lastAttempt returns the most recent attempt, or nil before the first.
func lastAttempt(obj *v1alpha1.KubernetesExecution) *v1alpha1.Attempt {
	if n := len(obj.Status.Attempts); n > 0 {
		return &obj.Status.Attempts[n-1]
	}
	return nil
}

// ranFor formats how long the execution has run, for messages.
func ranFor(obj *v1alpha1.KubernetesExecution, now time.Time) string {
	if obj.Status.StartTime == nil {
		return "0s"
	}
	return now.Sub(obj.Status.StartTime.Time).Round(time.Second).String()
}

func attemptsWord(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}
