package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// update rewrites the golden files from the current output: go test ./cmd/kubectl-kubernaut -update.
var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func at(minute, second int) *metav1.Time {
	t := metav1.NewTime(time.Date(2026, 3, 2, 9, minute, second, 0, time.UTC))
	return &t
}

func completedExecution() *v1alpha1.KubernetesExecution {
	return &v1alpha1.KubernetesExecution{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "scale-deployment-x7k2p", CreationTimestamp: *at(0, 0)},
		Spec: v1alpha1.KubernetesExecutionSpec{
			Action: v1alpha1.ActionSpec{
				Type:       "scale-deployment",
				Parameters: &apiextensionsv1.JSON{Raw: []byte(`{"replicas": 3}`)},
				Target:     v1alpha1.TargetSpec{Namespace: "shop", ResourceKind: "Deployment", ResourceName: "web"},
			},
			Admission: &v1alpha1.AdmissionRecord{Requester: v1alpha1.UserInfo{Username: "jane", Groups: []string{"sre"}}},
		},
		Status: v1alpha1.KubernetesExecutionStatus{
			Phase: v1alpha1.PhaseCompleted,
			Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue,
				Reason: v1alpha1.ReasonSucceeded, Message: "scaled deployment shop/web from 1 to 3 replicas"}},
			StartTime: at(0, 1), CompletionTime: at(0, 4),
			Attempts: []v1alpha1.Attempt{{Number: 1, JobName: "scale-deployment-x7k2p-1", StartTime: at(0, 1), EndTime: at(0, 4),
				ExitCode: ptr.To[int32](0), Reason: v1alpha1.ReasonSucceeded, Message: "scaled deployment shop/web from 1 to 3 replicas"}},
			Result: &v1alpha1.ExecutionResult{
				Success: true, Output: "scaled deployment shop/web from 1 to 3 replicas",
				StartTime: at(0, 1), EndTime: at(0, 4), ExitCode: ptr.To[int32](0),
				Data:          &apiextensionsv1.JSON{Raw: []byte(`{"before":{"replicas":1},"after":{"replicas":3},"changed":true,"dryRun":false}`)},
				ResourceUsage: &v1alpha1.ResourceUsage{CPUMillis: 38, PeakMemoryBytes: 21 << 20},
			},
		},
	}
}

// failedAfterApproval waited for approval, was approved, and failed after retries, its last
// output running over several lines.
func failedAfterApproval() *v1alpha1.KubernetesExecution {
	return &v1alpha1.KubernetesExecution{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: "drain-node-7fq2x", CreationTimestamp: *at(0, 0)},
		Spec: v1alpha1.KubernetesExecutionSpec{
			Action: v1alpha1.ActionSpec{
				Type:   "drain-node",
				Target: v1alpha1.TargetSpec{ResourceKind: "Node", ResourceName: "worker-1"},
			},
			Approval: v1alpha1.ApprovalRequired,
			Admission: &v1alpha1.AdmissionRecord{
				Requester: v1alpha1.UserInfo{Username: "jane"},
				CreatedBy: &v1alpha1.UserInfo{Username: "system:serviceaccount:kubernaut:workflows"},
			},
		},
		Status: v1alpha1.KubernetesExecutionStatus{
			Phase: v1alpha1.PhaseFailed,
			Conditions: []metav1.Condition{
				{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonMaxRetriesExceeded,
					Message: "2 attempts failed; the last: eviction of ops/db-0 refused by its PodDisruptionBudget"},
				{Type: v1alpha1.ConditionApproved, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonApproved, Message: "CHG-1234"},
				{Type: v1alpha1.ConditionStalled, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonMaxRetriesExceeded},
			},
			Approval: &v1alpha1.ApprovalRecord{Decision: v1alpha1.DecisionApproved, Approver: v1alpha1.UserInfo{Username: "bob"},
				Time: *at(2, 30), Reason: "CHG-1234"},
			StartTime: at(2, 31), CompletionTime: at(4, 2), RetryCount: 1,
			Attempts: []v1alpha1.Attempt{
				{Number: 1, JobName: "drain-node-7fq2x-1", StartTime: at(2, 31), EndTime: at(3, 1), ExitCode: ptr.To[int32](1),
					Reason: v1alpha1.ReasonActionFailed, Message: "eviction of ops/db-0 refused:\n\tdisruption budget db allows 0"},
				{Number: 2, JobName: "drain-node-7fq2x-2", StartTime: at(3, 32), EndTime: at(4, 2), ExitCode: ptr.To[int32](1),
					Reason: v1alpha1.ReasonActionFailed, Message: "eviction of ops/db-0 refused by its PodDisruptionBudget"},
			},
			Result: &v1alpha1.ExecutionResult{
				Success: false, Output: "cordoned worker-1\nevicted ops/web-1\nevicted ops/web-2",
				Error:     "eviction of ops/db-0 refused by its PodDisruptionBudget",
				StartTime: at(3, 32), EndTime: at(4, 2), ExitCode: ptr.To[int32](1),
			},
		},
	}
}

// awaiting waits for a decision; nothing has run.
func awaiting() *v1alpha1.KubernetesExecution {
	return &v1alpha1.KubernetesExecution{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: "cordon-node-b2m9d", CreationTimestamp: *at(0, 0)},
		Spec: v1alpha1.KubernetesExecutionSpec{
			Action: v1alpha1.ActionSpec{
				Type: "cordon-node", Parameters: &apiextensionsv1.JSON{Raw: []byte(`{}`)},
				Target: v1alpha1.TargetSpec{ResourceKind: "Node", ResourceName: "worker-2"},
			},
			DryRun:    true,
			Admission: &v1alpha1.AdmissionRecord{Requester: v1alpha1.UserInfo{Username: "jane"}},
		},
		Status: v1alpha1.KubernetesExecutionStatus{
			Phase:        v1alpha1.PhaseAwaitingApproval,
			WaitingSince: at(0, 1),
			Conditions: []metav1.Condition{
				{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAwaitingApproval, Message: "waiting for approval"},
				{Type: v1alpha1.ConditionApproved, Status: metav1.ConditionUnknown, Reason: v1alpha1.ReasonAwaitingApproval,
					Message: "waiting for approval", LastTransitionTime: *at(0, 1)},
			},
		},
	}
}

func TestResultOutput(t *testing.T) {
	for name, obj := range map[string]*v1alpha1.KubernetesExecution{
		"completed":             completedExecution(),
		"failed-after-approval": failedAfterApproval(),
		"awaiting-approval":     awaiting(),
	} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeResult(&b, obj); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, b.Bytes(), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -update writes it)", err)
			}
			if b.String() != string(want) {
				t.Errorf("output differs from %s (go test -update rewrites it):\n%s", golden, b.String())
			}
		})
	}
}
