package chaos_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
)

// The checks themselves, without a cluster: a check that cannot fail proves nothing.

func TestJobCreations(t *testing.T) {
	create := func(code int) apiRequest {
		return apiRequest{verb: "create", resource: "jobs", namespace: "ns", name: "e-1", code: code}
	}
	del := func(code int) apiRequest {
		return apiRequest{verb: "delete", resource: "jobs", namespace: "ns", name: "e-1", code: code}
	}
	for _, tc := range []struct {
		name     string
		reqs     []apiRequest
		existing bool
		want     int
	}{
		{"one create", []apiRequest{create(201)}, true, 1},
		{"a create refused as a duplicate", []apiRequest{create(201), create(409)}, true, 1},
		{"deleted and created again", []apiRequest{create(201), del(200), create(201)}, true, 2},
		{"deleted by its TTL, then created again", []apiRequest{create(201), del(200), create(201), del(200)}, false, 2},
		{"a 504 that was stored, and found on the next create", []apiRequest{create(504), create(409)}, true, 1},
		{"a 504 that was stored, then deleted", []apiRequest{create(504), del(200)}, false, 1},
		{"a 504 that was stored and is still there", []apiRequest{create(504)}, true, 1},
		{"a 504 that was not stored", []apiRequest{create(504), create(201)}, true, 1},
		{"a 504 that was not stored, nothing after", []apiRequest{create(504)}, false, 0},
		{"a 504 after the Job existed", []apiRequest{create(201), create(504)}, true, 1},
		{"a 504 stored, deleted, created again", []apiRequest{create(504), del(200), create(201)}, true, 2},
		{"refused", []apiRequest{create(403)}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := jobCreations(tc.reqs, map[string]bool{"ns/e-1": tc.existing})["ns/e-1"]
			if got != tc.want {
				t.Errorf("jobCreations = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	twice := kinds[1]
	attempt := func(n int32, reason string) v1alpha1.Attempt {
		return v1alpha1.Attempt{Number: n, JobName: controllers.JobName("e", n), Reason: reason}
	}
	ended := func(phase v1alpha1.ExecutionPhase, reason string, result *v1alpha1.ExecutionResult, attempts ...v1alpha1.Attempt) *v1alpha1.KubernetesExecution {
		e := &v1alpha1.KubernetesExecution{ObjectMeta: metav1.ObjectMeta{Name: "e"}}
		e.Status.Phase, e.Status.Attempts, e.Status.Result = phase, attempts, result
		e.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Reason: reason}}
		return e
	}
	success := &v1alpha1.ExecutionResult{Success: true, Output: kwokOutput}
	for _, tc := range []struct {
		name string
		e    *v1alpha1.KubernetesExecution
		want string // a part of the complaint; "" for none
	}{
		{"as implied", ended(v1alpha1.PhaseCompleted, v1alpha1.ReasonSucceeded, success,
			attempt(1, v1alpha1.ReasonActionFailed), attempt(2, v1alpha1.ReasonActionFailed), attempt(3, v1alpha1.ReasonSucceeded)), ""},
		{"an attempt too many", ended(v1alpha1.PhaseCompleted, v1alpha1.ReasonSucceeded, success,
			attempt(1, v1alpha1.ReasonActionFailed), attempt(2, v1alpha1.ReasonActionFailed), attempt(3, v1alpha1.ReasonActionFailed),
			attempt(4, v1alpha1.ReasonSucceeded)), "4 attempts, want 3"},
		{"an outcome lost with its Job", ended(v1alpha1.PhaseCompleted, v1alpha1.ReasonSucceeded, success,
			attempt(1, v1alpha1.ReasonJobDeleted), attempt(2, v1alpha1.ReasonActionFailed), attempt(3, v1alpha1.ReasonSucceeded)), "ended JobDeleted"},
		{"a result made up", ended(v1alpha1.PhaseCompleted, v1alpha1.ReasonSucceeded, &v1alpha1.ExecutionResult{Success: true},
			attempt(1, v1alpha1.ReasonActionFailed), attempt(2, v1alpha1.ReasonActionFailed), attempt(3, v1alpha1.ReasonSucceeded)), "want the action's"},
		{"an attempt skipped", ended(v1alpha1.PhaseCompleted, v1alpha1.ReasonSucceeded, success,
			attempt(1, v1alpha1.ReasonActionFailed), attempt(3, v1alpha1.ReasonActionFailed), attempt(4, v1alpha1.ReasonSucceeded)), "recorded as number 3"},
		{"not ended", ended(v1alpha1.PhaseRetrying, v1alpha1.ReasonBackingOff, nil, attempt(1, v1alpha1.ReasonActionFailed)), "phase \"Retrying\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := twice.verify(tc.e)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("verify = %q, want a complaint containing %q", got, tc.want)
			}
		})
	}
}
