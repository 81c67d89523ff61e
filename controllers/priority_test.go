package controllers

import (
	"context"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apitypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// A burst of new executions must not hold back the executions already running: their Job's end,
// their status writes and their revocation are handed out first, whatever order they came in.
func TestStartedExecutionsGoBeforeNewOnes(t *testing.T) {
	q := priorityqueue.New[reconcile.Request]("test")
	defer q.ShutDown()
	ctx := context.Background()

	newExec := func(name string) *v1alpha1.KubernetesExecution {
		return &v1alpha1.KubernetesExecution{ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: name, UID: apitypes.UID("uid-" + name)}}
	}
	// Two new executions arrive first.
	for _, name := range []string{"new-1", "new-2"} {
		executionEvents.Create(ctx, event.CreateEvent{Object: newExec(name)}, q)
	}
	// Then a running execution's status is written, and another one's Job finishes.
	running := newExec("running")
	running.Status.Attempts = []v1alpha1.Attempt{{Number: 1, JobName: "running-1"}}
	executionEvents.Update(ctx, event.UpdateEvent{ObjectOld: newExec("running"), ObjectNew: running}, q)
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: "finished-1", OwnerReferences: []metav1.OwnerReference{{
		APIVersion: v1alpha1.GroupVersion.String(), Kind: "KubernetesExecution", Name: "finished", UID: "uid-finished", Controller: ptr.To(true),
	}}}}
	attemptJobEvents.Update(ctx, event.UpdateEvent{ObjectOld: job, ObjectNew: job}, q)
	// A Job that no execution controls enqueues nothing.
	attemptJobEvents.Create(ctx, event.CreateEvent{Object: &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: "foreign"}}}, q)

	var order []string
	for q.Len() > 0 {
		req, _, _ := q.GetWithPriority()
		order = append(order, req.Name)
		q.Done(req)
	}
	want := []string{"running", "finished", "new-1", "new-2"}
	if len(order) != len(want) {
		t.Fatalf("handed out %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("handed out %v, want %v", order, want)
		}
	}
}
