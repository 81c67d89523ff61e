package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

var (
	created = metav1.NewTime(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	now     = metav1.NewTime(time.Date(2026, 3, 2, 9, 5, 0, 0, time.UTC))
)

// waiting is an execution in AwaitingApproval as the executor leaves it.
func waiting() *v1alpha1.KubernetesExecution {
	return &v1alpha1.KubernetesExecution{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: "drain-7fq2x", Generation: 1, ResourceVersion: "4711"},
		Status: v1alpha1.KubernetesExecutionStatus{
			Phase: v1alpha1.PhaseAwaitingApproval,
			Conditions: []metav1.Condition{
				{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAwaitingApproval,
					Message: "waiting for approval", LastTransitionTime: created, ObservedGeneration: 1},
				{Type: v1alpha1.ConditionApproved, Status: metav1.ConditionUnknown, Reason: v1alpha1.ReasonAwaitingApproval,
					Message: "waiting for approval", LastTransitionTime: created, ObservedGeneration: 1},
				{Type: v1alpha1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAwaitingApproval,
					Message: "waiting for approval", LastTransitionTime: created, ObservedGeneration: 1},
			},
		},
	}
}

func TestDecideChangesOnlyTheApprovedCondition(t *testing.T) {
	for _, tc := range []struct {
		approve bool
		status  metav1.ConditionStatus
		reason  string
	}{
		{true, metav1.ConditionTrue, v1alpha1.ReasonApproved},
		{false, metav1.ConditionFalse, v1alpha1.ReasonDenied},
	} {
		obj := waiting()
		decided, err := decide(obj, tc.approve, "change CHG-1234", now)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(obj, waiting()) {
			t.Error("decide changed the object it was given")
		}
		want := waiting()
		want.Status.Conditions[1] = metav1.Condition{
			Type: v1alpha1.ConditionApproved, Status: tc.status, Reason: tc.reason,
			Message: "change CHG-1234", LastTransitionTime: now, ObservedGeneration: 1,
		}
		if !reflect.DeepEqual(decided, want) {
			t.Errorf("approve=%v:\ngot  %+v\nwant %+v", tc.approve, decided.Status.Conditions, want.Status.Conditions)
		}
	}
}

func TestDecideAddsAMissingApprovedCondition(t *testing.T) {
	obj := waiting()
	obj.Status.Conditions = obj.Status.Conditions[:1]
	decided, err := decide(obj, true, "ok", now)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(decided.Status.Conditions); n != 2 || decided.Status.Conditions[1].Type != v1alpha1.ConditionApproved {
		t.Errorf("got %+v", decided.Status.Conditions)
	}
}

func TestDecideRefuses(t *testing.T) {
	decidedBy := waiting()
	decidedBy.Status.Phase = v1alpha1.PhaseRunning
	decidedBy.Status.Conditions[1].Status = metav1.ConditionTrue
	decidedBy.Status.Approval = &v1alpha1.ApprovalRecord{
		Decision: v1alpha1.DecisionApproved, Approver: v1alpha1.UserInfo{Username: "bob"}, Time: now, Reason: "go ahead",
	}
	timedOut := waiting()
	timedOut.Status.Phase = v1alpha1.PhaseFailed
	timedOut.Status.Conditions[1] = metav1.Condition{Type: v1alpha1.ConditionApproved, Status: metav1.ConditionFalse,
		Reason: v1alpha1.ReasonApprovalTimedOut, Message: "nobody decided within 1h", LastTransitionTime: now}
	running := waiting()
	running.Status.Phase = v1alpha1.PhaseRunning
	running.Status.Conditions = running.Status.Conditions[:1]
	fresh := waiting()
	fresh.Status = v1alpha1.KubernetesExecutionStatus{}

	for name, tc := range map[string]struct {
		obj  *v1alpha1.KubernetesExecution
		want string
	}{
		"already decided": {decidedBy, "kubernetesexecution ops/drain-7fq2x was already approved by bob at 2026-03-02T09:05:00Z: go ahead"},
		"timed out": {timedOut, "kubernetesexecution ops/drain-7fq2x is no longer awaiting approval: its Approved condition has been False " +
			"since 2026-03-02T09:05:00Z (ApprovalTimedOut: nobody decided within 1h)"},
		"never asked":  {running, "kubernetesexecution ops/drain-7fq2x does not need approval: its phase is Running"},
		"not taken up": {fresh, "kubernetesexecution ops/drain-7fq2x has no phase yet: the executor has not taken it up"},
	} {
		_, err := decide(tc.obj, true, "ok", now)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", name, err, tc.want)
		}
		if e, ok := err.(exitError); !ok || e.code != exitFailed { // decide returns it unwrapped
			t.Errorf("%s: %v does not exit %d", name, err, exitFailed)
		}
	}
}

func TestConditionsPatch(t *testing.T) {
	decided, err := decide(waiting(), false, "not during the freeze", now)
	if err != nil {
		t.Fatal(err)
	}
	body, err := conditionsPatch("4711", decided.Status.Conditions[1:2])
	if err != nil {
		t.Fatal(err)
	}
	want := `{"metadata":{"resourceVersion":"4711"},"status":{"conditions":[{"type":"Approved","status":"False",` +
		`"observedGeneration":1,"lastTransitionTime":"2026-03-02T09:05:00Z","reason":"Denied","message":"not during the freeze"}]}}`
	if string(body) != want {
		t.Errorf("got  %s\nwant %s", body, want)
	}
	if _, err := conditionsPatch("", nil); err == nil {
		t.Error("a patch without a resourceVersion would not be guarded against concurrent changes")
	}
}
