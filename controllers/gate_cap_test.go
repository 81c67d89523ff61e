package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apitypes "k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// TestMaxRunningJobsCountsRunningAndEarlierWaiting: the executor-wide cap (--max-running-jobs)
// counts the executions that run (an attempt made, not ended) and the ready ones created
// earlier that still wait; ended ones, later ones and ones being deleted free their slot. The
// gate's arithmetic over the cache's indexes, which the fake client serves.
func TestMaxRunningJobsCountsRunningAndEarlierWaiting(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tpl := &v1alpha1.ActionTemplate{ObjectMeta: metav1.ObjectMeta{Name: "act", UID: "tpl"}, Spec: v1alpha1.ActionTemplateSpec{Mutating: new(bool)}}
	exec := func(name string, created int, phase v1alpha1.ExecutionPhase, attempts int) *v1alpha1.KubernetesExecution {
		e := &v1alpha1.KubernetesExecution{ObjectMeta: metav1.ObjectMeta{
			Namespace: "ops", Name: name, UID: apitypes.UID(name), CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(created) * time.Second)),
		}}
		e.Spec.Action = v1alpha1.ActionSpec{Type: "act", Target: v1alpha1.TargetSpec{Namespace: "ops", ResourceKind: "ConfigMap", ResourceName: name}}
		e.Status.Phase = phase
		for i := range attempts {
			e.Status.Attempts = append(e.Status.Attempts, v1alpha1.Attempt{Number: int32(i + 1), JobName: fmt.Sprintf("%s-%d", name, i+1)}) //nolint:gosec // tiny
		}
		return e
	}
	for _, tc := range []struct {
		name   string
		others []*v1alpha1.KubernetesExecution
		cap    int
		waits  bool
	}{
		{"nothing runs", nil, 1, false},
		{"one runs, cap 1", []*v1alpha1.KubernetesExecution{exec("a", 0, v1alpha1.PhaseRunning, 1)}, 1, true},
		{"one runs, cap 2", []*v1alpha1.KubernetesExecution{exec("a", 0, v1alpha1.PhaseRunning, 1)}, 2, false},
		{"one retrying counts as running", []*v1alpha1.KubernetesExecution{exec("a", 0, v1alpha1.PhaseRetrying, 1)}, 1, true},
		{"ended ones free their slot", []*v1alpha1.KubernetesExecution{exec("a", 0, v1alpha1.PhaseCompleted, 1), exec("b", 1, v1alpha1.PhaseFailed, 2)}, 1, false},
		{"an earlier waiting one goes first", []*v1alpha1.KubernetesExecution{exec("a", 0, v1alpha1.PhasePending, 0)}, 1, true},
		{"a later waiting one does not", []*v1alpha1.KubernetesExecution{exec("z", 9, v1alpha1.PhasePending, 0)}, 1, false},
		{"one running and one earlier waiting fill a cap of 2", []*v1alpha1.KubernetesExecution{exec("a", 0, v1alpha1.PhaseRunning, 1), exec("b", 1, v1alpha1.PhasePending, 0)}, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			me := exec("me", 5, v1alpha1.PhasePending, 0)
			objs := []client.Object{tpl, me}
			for _, o := range tc.others {
				objs = append(objs, o)
			}
			c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).
				WithIndex(&v1alpha1.KubernetesExecution{}, queueStateIndex, queueState).
				WithIndex(&v1alpha1.KubernetesExecution{}, targetIndex, targetIndexFunc).
				WithIndex(&v1alpha1.KubernetesExecution{}, actionTypeIndex, actionTypeIndexFunc).Build()
			r := &KubernetesExecutionReconciler{Client: c, Options: ExecutorOptions{MaxRunningJobs: tc.cap}}
			q := &queue{r: r, ctx: context.Background(), templates: map[string]*v1alpha1.ActionTemplate{}}
			g, err := q.wait(me, tpl, t0.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if waits := g != nil; waits != tc.waits {
				t.Fatalf("waits %t, want %t (%+v)", waits, tc.waits, g)
			}
			if g != nil && g.reason != v1alpha1.ReasonQueueFull {
				t.Errorf("reason %s, want QueueFull", g.reason)
			}
		})
	}
}
