package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

var (
	t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	t1 = t0.Add(2 * time.Second)
	t2 = t0.Add(10 * time.Second)
	t3 = t0.Add(12500 * time.Millisecond)
)

func mt(t time.Time) *metav1.Time { return &metav1.Time{Time: t} }

// execution returns a terminal execution of scale-deployment, admitted for jane at template
// generation 3, that mutate adjusts.
func execution(mutate func(*v1alpha1.KubernetesExecution)) *v1alpha1.KubernetesExecution {
	obj := &v1alpha1.KubernetesExecution{
		ObjectMeta: metav1.ObjectMeta{
			Name: "scale-web", Namespace: "team-a", UID: "0b6d6c2e-uid",
			CreationTimestamp: metav1.Time{Time: t0.Add(-time.Second)},
		},
		Spec: v1alpha1.KubernetesExecutionSpec{
			WorkflowExecutionRef: &v1alpha1.WorkflowExecutionReference{Name: "wf-1", Namespace: "kubernaut"},
			StepIndex:            2,
			Action: v1alpha1.ActionSpec{
				Type:       "scale-deployment",
				Parameters: &apiextensionsv1.JSON{Raw: []byte(`{"replicas":3}`)},
				Target:     v1alpha1.TargetSpec{Namespace: "team-a", ResourceKind: "Deployment", ResourceName: "web"},
			},
			Admission: &v1alpha1.AdmissionRecord{
				Requester:          v1alpha1.UserInfo{Username: "jane", UID: "u-1", Groups: []string{"sre", "system:authenticated"}},
				TemplateUID:        "tpl-uid",
				TemplateGeneration: 3,
			},
		},
		Status: v1alpha1.KubernetesExecutionStatus{
			Phase:          v1alpha1.PhaseCompleted,
			StartTime:      mt(t0),
			CompletionTime: mt(t3),
			Conditions: []metav1.Condition{{
				Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSucceeded,
			}},
			Attempts: []v1alpha1.Attempt{{
				Number: 1, JobName: "scale-web-1", StartTime: mt(t1), EndTime: mt(t2),
				ExitCode: ptr.To[int32](0), Reason: v1alpha1.ReasonSucceeded,
			}},
			Result: &v1alpha1.ExecutionResult{
				Success: true, Output: "scaled web from 1 to 3", StartTime: mt(t1), EndTime: mt(t2), ExitCode: ptr.To[int32](0),
			},
		},
	}
	if mutate != nil {
		mutate(obj)
	}
	return obj
}

// template returns the execution's template at generation 3 with the given parameter schema.
func template(schema string) *v1alpha1.ActionTemplate {
	tpl := &v1alpha1.ActionTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "scale-deployment", UID: "tpl-uid", Generation: 3},
		Spec:       v1alpha1.ActionTemplateSpec{Image: "kubernaut-actions"},
	}
	if schema != "" {
		tpl.Spec.Parameters = &apiextensionsv1.JSON{Raw: []byte(schema)}
	}
	return tpl
}

// inputs are the facts the controller would give Build for a measured attempt.
func inputs() Inputs {
	return Inputs{
		Template:      template(`{"type":"object","properties":{"replicas":{"type":"integer"}}}`),
		TemplateImage: "registry.example/kubernaut-actions:v1.2.0",
		PodName:       "scale-web-1-x7k2p",
		ResourceUsage: &ResourceUsage{CPUSeconds: 0.42, PeakMemoryBytes: 31457280},
	}
}

func TestBuildCompleted(t *testing.T) {
	ev, err := Build(execution(nil), inputs())
	if err != nil {
		t.Fatal(err)
	}
	got, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"eventType":"kubernetes.execution","eventId":"` + EventID("0b6d6c2e-uid", "Completed", 1) + `",` +
		`"timestamp":"2026-03-01T10:00:12.5Z","executionName":"scale-web","executionNamespace":"team-a",` +
		`"executionUID":"0b6d6c2e-uid","actionType":"scale-deployment","phase":"Completed","reason":"Succeeded",` +
		`"target":{"namespace":"team-a","resourceKind":"Deployment","resourceName":"web"},` +
		`"result":{"success":true,"output":"scaled web from 1 to 3","error":"","duration":8},` +
		`"jobInfo":{"name":"scale-web-1","podName":"scale-web-1-x7k2p","exitCode":0,"resourceUsage":{"cpuSeconds":0.42,"peakMemoryBytes":31457280}},` +
		`"workflowExecutionRef":{"name":"wf-1","namespace":"kubernaut"},"stepIndex":2,"dryRun":false,` +
		`"requester":{"username":"jane","uid":"u-1","groups":["sre","system:authenticated"]},"createdBy":null,"approval":null,` +
		`"template":{"name":"scale-deployment","generation":3,"image":"registry.example/kubernaut-actions:v1.2.0"},` +
		`"parameters":{"replicas":3},` +
		`"attempts":[{"number":1,"job":"scale-web-1","pod":"scale-web-1-x7k2p","start":"2026-03-01T10:00:02Z","end":"2026-03-01T10:00:10Z","exitCode":0,"reason":"Succeeded"}],` +
		`"cluster":""}`
	if string(got) != want {
		t.Errorf("event JSON:\n got %s\nwant %s", got, want)
	}
}

func TestBuild(t *testing.T) {
	failedAttempt := func(n int32, start, end time.Time) v1alpha1.Attempt {
		return v1alpha1.Attempt{Number: n, JobName: fmt.Sprintf("scale-web-%d", n), StartTime: mt(start), EndTime: mt(end),
			ExitCode: ptr.To[int32](1), Reason: v1alpha1.ReasonActionFailed}
	}
	tests := []struct {
		name   string
		mutate func(*v1alpha1.KubernetesExecution)
		in     func(*Inputs)
		check  func(t *testing.T, ev Event)
	}{{
		name: "failed after retries",
		mutate: func(obj *v1alpha1.KubernetesExecution) {
			obj.Status.Phase = v1alpha1.PhaseFailed
			obj.Status.Conditions = []metav1.Condition{
				{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonMaxRetriesExceeded},
				{Type: v1alpha1.ConditionStalled, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonMaxRetriesExceeded},
			}
			obj.Status.Attempts = []v1alpha1.Attempt{failedAttempt(1, t0, t1), failedAttempt(2, t1, t2)}
			obj.Status.Result = &v1alpha1.ExecutionResult{Error: "conflict", StartTime: mt(t1), EndTime: mt(t2), ExitCode: ptr.To[int32](1)}
		},
		in: func(in *Inputs) { in.ResourceUsage, in.ResourceUsageUnavailable = nil, "MetricsUnavailable" },
		check: func(t *testing.T, ev Event) {
			expect(t, "phase", ev.Phase, "Failed")
			expect(t, "reason", ev.Reason, v1alpha1.ReasonMaxRetriesExceeded)
			expect(t, "eventId", ev.EventID, EventID("0b6d6c2e-uid", "Failed", 2))
			expect(t, "success", ev.Result.Success, false)
			expect(t, "error", ev.Result.Error, "conflict")
			expect(t, "duration", ev.Result.Duration, 8.0)
			expect(t, "attempts", len(ev.Attempts), 2)
			expect(t, "first attempt pod", ev.Attempts[0].Pod, "")
			expect(t, "last attempt pod", ev.Attempts[1].Pod, "scale-web-1-x7k2p")
			expect(t, "job", ev.JobInfo.Name, "scale-web-2")
			expect(t, "exit code", *ev.JobInfo.ExitCode, int32(1))
			if ev.JobInfo.ResourceUsage != nil {
				t.Errorf("resourceUsage = %+v, want nil", ev.JobInfo.ResourceUsage)
			}
			expect(t, "resourceUsageUnavailable", ev.JobInfo.ResourceUsageUnavailable, "MetricsUnavailable")
		},
	}, {
		name: "timed out",
		mutate: func(obj *v1alpha1.KubernetesExecution) {
			obj.Status.Phase = v1alpha1.PhaseTimedOut
			obj.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonTimedOut}}
			obj.Status.Attempts = []v1alpha1.Attempt{{Number: 1, JobName: "scale-web-1", StartTime: mt(t1), Reason: v1alpha1.ReasonTimedOut}}
			obj.Status.Result = &v1alpha1.ExecutionResult{Error: "ran past its timeout of 10s"}
		},
		in: func(in *Inputs) { in.ResourceUsage = nil },
		check: func(t *testing.T, ev Event) {
			expect(t, "phase", ev.Phase, "TimedOut")
			expect(t, "reason", ev.Reason, v1alpha1.ReasonTimedOut)
			expect(t, "success", ev.Result.Success, false)
			expect(t, "duration (execution start to completion)", ev.Result.Duration, 12.5)
			if ev.JobInfo.ExitCode != nil || ev.Attempts[0].End != nil || ev.Attempts[0].ExitCode != nil {
				t.Errorf("an attempt that never terminated has an exit code or end: %+v", ev.Attempts[0])
			}
			expect(t, "resourceUsageUnavailable", ev.JobInfo.ResourceUsageUnavailable, ReasonNotMeasured)
		},
	}, {
		name: "dry run",
		mutate: func(obj *v1alpha1.KubernetesExecution) {
			obj.Spec.DryRun = true
			obj.Status.Result.Output = "would scale web from 1 to 3"
		},
		check: func(t *testing.T, ev Event) {
			expect(t, "dryRun", ev.DryRun, true)
			expect(t, "success", ev.Result.Success, true)
			expect(t, "output", ev.Result.Output, "would scale web from 1 to 3")
		},
	}, {
		name: "validation failure with no attempts",
		mutate: func(obj *v1alpha1.KubernetesExecution) {
			obj.Status = v1alpha1.KubernetesExecutionStatus{
				Phase:          v1alpha1.PhaseFailed,
				CompletionTime: mt(t1),
				Conditions: []metav1.Condition{
					{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonValidationFailed},
				},
				Result: &v1alpha1.ExecutionResult{Error: "spec.action.parameters.replicas: must be at most 100"},
			}
		},
		check: func(t *testing.T, ev Event) {
			expect(t, "reason", ev.Reason, v1alpha1.ReasonValidationFailed)
			expect(t, "eventId", ev.EventID, EventID("0b6d6c2e-uid", "Failed", 0))
			expect(t, "timestamp", ev.Timestamp, t1)
			expect(t, "duration", ev.Result.Duration, 0.0)
			if ev.JobInfo != nil {
				t.Errorf("jobInfo = %+v, want nil", ev.JobInfo)
			}
			if ev.Attempts == nil || len(ev.Attempts) != 0 {
				t.Errorf("attempts = %#v, want empty and not nil", ev.Attempts)
			}
			b, _ := ev.Encode()
			for _, s := range []string{`"jobInfo":null`, `"attempts":[]`} {
				if !bytes.Contains(b, []byte(s)) {
					t.Errorf("event JSON lacks %s: %s", s, b)
				}
			}
		},
	}, {
		name: "requester and template generation come from the admission record",
		in: func(in *Inputs) {
			in.Template = nil // the template was deleted since: nothing is read from it
			in.Cluster = "edge-1"
		},
		check: func(t *testing.T, ev Event) {
			expect(t, "requester", ev.Requester.Username, "jane")
			expect(t, "requester uid", ev.Requester.UID, "u-1")
			expect(t, "groups", strings.Join(ev.Requester.Groups, ","), "sre,system:authenticated")
			expect(t, "template generation", ev.Template.Generation, int64(3))
			expect(t, "cluster", ev.Cluster, "edge-1")
		},
	}, {
		name: "created on behalf of the requester, and approved: both identities and the approver",
		mutate: func(obj *v1alpha1.KubernetesExecution) {
			obj.Spec.Admission.Requester = v1alpha1.UserInfo{Username: "jane", Groups: []string{"sre"}}
			obj.Spec.Admission.CreatedBy = &v1alpha1.UserInfo{Username: "system:serviceaccount:kubernaut:workflow", UID: "sa-1"}
			obj.Status.Approval = &v1alpha1.ApprovalRecord{
				Decision: v1alpha1.DecisionApproved, Time: metav1.NewTime(t0.Add(-500 * time.Millisecond).In(time.FixedZone("CET", 3600))),
				Approver: v1alpha1.UserInfo{Username: "bob", Groups: []string{"oncall"}}, Reason: "checked with the owner",
			}
		},
		check: func(t *testing.T, ev Event) {
			expect(t, "requester", ev.Requester.Username, "jane")
			b, _ := ev.Encode()
			for _, s := range []string{
				`"createdBy":{"username":"system:serviceaccount:kubernaut:workflow","uid":"sa-1","groups":[]}`,
				`"approval":{"decision":"Approved","approver":"bob","time":"2026-03-01T09:59:59.5Z","reason":"checked with the owner"}`,
			} {
				if !bytes.Contains(b, []byte(s)) {
					t.Errorf("event JSON lacks %s: %s", s, b)
				}
			}
		},
	}, {
		name: "denied: the approver's reason",
		mutate: func(obj *v1alpha1.KubernetesExecution) {
			obj.Status.Phase = v1alpha1.PhaseFailed
			obj.Status.Attempts, obj.Status.Result, obj.Status.StartTime = nil, nil, nil
			obj.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonDenied}}
			obj.Status.Approval = &v1alpha1.ApprovalRecord{Decision: v1alpha1.DecisionDenied, Time: metav1.NewTime(t1),
				Approver: v1alpha1.UserInfo{Username: "bob"}, Reason: "not during the freeze"}
		},
		check: func(t *testing.T, ev Event) {
			expect(t, "reason", ev.Reason, v1alpha1.ReasonDenied)
			expect(t, "approval", *ev.Approval, Approval{Decision: "Denied", Approver: "bob", Time: t1, Reason: "not during the freeze"})
			if ev.CreatedBy != nil {
				t.Errorf("createdBy %+v for an execution its requester created", ev.CreatedBy)
			}
		},
	}, {
		name: "a template edited after admission does not change the recorded generation",
		in:   func(in *Inputs) { in.Template.Generation = 7 },
		check: func(t *testing.T, ev Event) {
			expect(t, "template generation", ev.Template.Generation, int64(3))
			expect(t, "parameters (redacted: the schema is not the admitted one)", string(ev.Parameters), `{"replicas":"<redacted>"}`)
		},
	}, {
		name:   "no admission record",
		mutate: func(obj *v1alpha1.KubernetesExecution) { obj.Spec.Admission = nil; obj.Spec.WorkflowExecutionRef = nil },
		check: func(t *testing.T, ev Event) {
			b, _ := ev.Encode()
			for _, s := range []string{`"requester":null`, `"workflowExecutionRef":null`, `"generation":0`} {
				if !bytes.Contains(b, []byte(s)) {
					t.Errorf("event JSON lacks %s: %s", s, b)
				}
			}
		},
	}, {
		name: "deleted while running",
		mutate: func(obj *v1alpha1.KubernetesExecution) {
			obj.DeletionTimestamp = mt(t2)
			obj.Status.Phase = v1alpha1.PhaseRunning
			obj.Status.CompletionTime = nil
			obj.Status.Result = nil
			obj.Status.Attempts = []v1alpha1.Attempt{{Number: 1, JobName: "scale-web-1", StartTime: mt(t1)}}
		},
		check: func(t *testing.T, ev Event) {
			expect(t, "phase", ev.Phase, PhaseCancelled)
			expect(t, "reason", ev.Reason, ReasonDeleted)
			expect(t, "timestamp", ev.Timestamp, t2)
			expect(t, "success", ev.Result.Success, false)
			expect(t, "eventId", ev.EventID, EventID("0b6d6c2e-uid", PhaseCancelled, 1))
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := inputs()
			if tt.in != nil {
				tt.in(&in)
			}
			obj := execution(tt.mutate)
			before := obj.DeepCopy()
			ev, err := Build(obj, in)
			if err != nil {
				t.Fatal(err)
			}
			expect(t, "eventType", ev.EventType, EventType)
			tt.check(t, ev)
			again, _ := Build(obj, in)
			a, _ := ev.Encode()
			b, _ := again.Encode()
			if !bytes.Equal(a, b) {
				t.Errorf("Build is not deterministic:\n%s\n%s", a, b)
			}
			if !equalJSON(t, before, obj) {
				t.Error("Build changed the execution")
			}
		})
	}
}

func TestBuildRefusesRunningExecution(t *testing.T) {
	obj := execution(func(obj *v1alpha1.KubernetesExecution) { obj.Status.Phase = v1alpha1.PhaseRetrying })
	if _, err := Build(obj, inputs()); err == nil {
		t.Fatal("Build of a Retrying execution that is not being deleted succeeded")
	}
}

func TestEventID(t *testing.T) {
	id := EventID("uid-1", "Completed", 1)
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Errorf("EventID = %q, want 32 hex characters", id)
	}
	if EventID("uid-1", "Completed", 1) != id {
		t.Error("EventID is not stable")
	}
	for _, other := range []string{EventID("uid-2", "Completed", 1), EventID("uid-1", "Failed", 1), EventID("uid-1", "Completed", 2)} {
		if other == id {
			t.Errorf("EventID collides for a different outcome: %s", other)
		}
	}
}

// expect reports a field whose value is not the wanted one.
func expect[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// equalJSON reports whether a and b encode to the same JSON.
func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}
