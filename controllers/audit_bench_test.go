package controllers

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/audit"
	"github.com/kubernaut/kubernaut-executor/test/auditreceiver"
)

// BenchmarkAuditDrain measures how fast the audit reconciler drains a backlog of 1,000 ended
// executions (the storage service was down, now it is back) with its default 4 workers: the
// event built from each execution, delivered to a receiver that fsyncs each one, the status
// written and the finalizer released. The executions live in the fake client (the API server's
// cost is not in the figure). It reports the drain time and the memory the backlog's tracking
// costs the reconciler (its own bookkeeping; the executions themselves are the outbox, in the
// API server and the manager's cache).
func BenchmarkAuditDrain(b *testing.B) {
	const backlog = 1000
	_, ts := auditreceiver.NewTestServer(b)
	sender, err := audit.NewSender(audit.Config{URL: ts.URL})
	if err != nil {
		b.Fatal(err)
	}
	s := testScheme(b)
	for i := range b.N {
		objs := make([]client.Object, 0, backlog)
		for j := range backlog {
			obj := &v1alpha1.KubernetesExecution{ObjectMeta: metav1.ObjectMeta{
				Namespace: "ops", Name: fmt.Sprintf("e-%d-%d", i, j), UID: types.UID(fmt.Sprintf("uid-%d-%d", i, j)),
				Finalizers: []string{v1alpha1.AuditFinalizer},
			}}
			obj.Spec.Action = v1alpha1.ActionSpec{Type: "gone", Target: v1alpha1.TargetSpec{Namespace: "ops", ResourceKind: "Deployment", ResourceName: "web"}}
			obj.Spec.Admission = &v1alpha1.AdmissionRecord{Requester: v1alpha1.UserInfo{Username: "alice"}, TemplateUID: "t", TemplateGeneration: 1}
			now := metav1.Now()
			obj.Status = v1alpha1.KubernetesExecutionStatus{Phase: v1alpha1.PhaseCompleted, StartTime: &now, CompletionTime: &now,
				Attempts: []v1alpha1.Attempt{{Number: 1, JobName: obj.Name + "-1", Reason: v1alpha1.ReasonSucceeded, EndTime: &now}},
				Result:   &v1alpha1.ExecutionResult{Success: true, Output: "done"}}
			objs = append(objs, obj)
		}
		c := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).WithStatusSubresource(&v1alpha1.KubernetesExecution{}).Build()
		r := &AuditReconciler{Client: c, Recorder: discard{}, Clock: clock.RealClock{}, Options: AuditOptions{Sink: sender}}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		// The backlog as a restarted manager sees it: every execution known before delivery.
		for _, o := range objs {
			r.backlog.Store(client.ObjectKeyFromObject(o), struct{}{})
		}
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/backlog, "tracking-B/execution")

		start := time.Now()
		work := make(chan client.Object)
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for o := range work {
					if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(o)}); err != nil {
						b.Error(err)
					}
				}
			}()
		}
		for _, o := range objs {
			work <- o
		}
		close(work)
		wg.Wait()
		b.ReportMetric(time.Since(start).Seconds(), "drain-s/1000")
		if r.Backlog() != 0 {
			b.Fatalf("%d executions still wait", r.Backlog())
		}
	}
}

// discard drops Events.
type discard struct{}

func (discard) Eventf(_, _ k8sruntime.Object, _, _, _, _ string, _ ...any) {}

func testScheme(tb testing.TB) *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		tb.Fatal(err)
	}
	return s
}

// failingSink refuses every event, as a storage service that is down.
type failingSink struct{ calls int }

func (s *failingSink) Send(context.Context, audit.Event) error {
	s.calls++
	return &audit.DeliveryError{StatusCode: 503}
}

// TestAuditDeadline: past the operator's audit deadline an undelivered event is logged in full
// and given up; the execution is released and its condition says so. Before it, the event is
// retried and the execution kept.
func TestAuditDeadline(t *testing.T) {
	ended := metav1.NewTime(time.Now().Add(-time.Hour))
	obj := &v1alpha1.KubernetesExecution{ObjectMeta: metav1.ObjectMeta{
		Namespace: "ops", Name: "late", UID: "uid-late", Finalizers: []string{v1alpha1.AuditFinalizer},
	}}
	obj.Spec.Action = v1alpha1.ActionSpec{Type: "gone", Target: v1alpha1.TargetSpec{Namespace: "ops", ResourceKind: "Deployment", ResourceName: "web"}}
	obj.Status = v1alpha1.KubernetesExecutionStatus{Phase: v1alpha1.PhaseFailed, StartTime: &ended, CompletionTime: &ended}
	for _, tt := range []struct {
		deadline     time.Duration
		released     bool
		reason       string
		sends        int
		requeueAfter bool
	}{
		{deadline: 2 * time.Hour, released: false, reason: v1alpha1.ReasonAuditDeliveryFailed, sends: 1, requeueAfter: true},
		{deadline: 30 * time.Minute, released: true, reason: v1alpha1.ReasonAuditAbandoned, sends: 0},
	} {
		t.Run(tt.deadline.String(), func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(obj.DeepCopy()).WithStatusSubresource(&v1alpha1.KubernetesExecution{}).Build()
			sink := &failingSink{}
			r := &AuditReconciler{Client: c, Recorder: discard{}, Clock: clock.RealClock{}, Options: AuditOptions{Sink: sink, Deadline: tt.deadline}}
			res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
			if err != nil {
				t.Fatal(err)
			}
			got := &v1alpha1.KubernetesExecution{}
			if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), got); err != nil {
				t.Fatal(err)
			}
			held := len(got.Finalizers) > 0
			if held == tt.released || sink.calls != tt.sends || (res.RequeueAfter > 0) != tt.requeueAfter {
				t.Fatalf("finalizers %v, sends %d, requeue %v", got.Finalizers, sink.calls, res.RequeueAfter)
			}
			var reason string
			for _, cond := range got.Status.Conditions {
				if cond.Type == v1alpha1.ConditionAudited {
					reason = cond.Reason
				}
			}
			if reason != tt.reason {
				t.Fatalf("Audited reason %q, want %q", reason, tt.reason)
			}
		})
	}
}

// TestAuditWaitsOutItsBackoff: a failed delivery writes the status, and that write wakes the
// reconciler again at once; that pass, and any other before the backoff has passed, sends
// nothing. Once it has passed, the event is sent again.
func TestAuditWaitsOutItsBackoff(t *testing.T) {
	now := time.Now()
	ended := metav1.NewTime(now.Add(-time.Minute))
	obj := &v1alpha1.KubernetesExecution{ObjectMeta: metav1.ObjectMeta{
		Namespace: "ops", Name: "down", UID: "uid-down", Finalizers: []string{v1alpha1.AuditFinalizer},
	}}
	obj.Spec.Action = v1alpha1.ActionSpec{Type: "gone", Target: v1alpha1.TargetSpec{Namespace: "ops", ResourceKind: "Deployment", ResourceName: "web"}}
	obj.Status = v1alpha1.KubernetesExecutionStatus{Phase: v1alpha1.PhaseCompleted, StartTime: &ended, CompletionTime: &ended}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(obj).WithStatusSubresource(&v1alpha1.KubernetesExecution{}).Build()
	sink := &failingSink{}
	clk := clocktesting.NewFakePassiveClock(now)
	r := &AuditReconciler{Client: c, Recorder: discard{}, Clock: clk, Options: AuditOptions{Sink: sink}}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(obj)}
	reconcile := func() time.Duration {
		t.Helper()
		res, err := r.Reconcile(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return res.RequeueAfter
	}

	// The first delivery fails and the second is due after the backoff; the passes woken before
	// then send nothing.
	for failures := 1; failures <= 3; failures++ {
		first := reconcile()
		if sink.calls != failures || first <= 0 {
			t.Fatalf("failure %d: %d sends, requeue after %s", failures, sink.calls, first)
		}
		for range 3 {
			if wait := reconcile(); sink.calls != failures || wait <= 0 || wait > first+time.Second {
				t.Fatalf("a pass before the backoff: %d sends, requeue after %s (the backoff is %s)", sink.calls, wait, first)
			}
		}
		clk.SetTime(clk.Now().Add(first + time.Second))
	}
	got := &v1alpha1.KubernetesExecution{}
	if err := c.Get(context.Background(), req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Audit.Attempts != 3 || !controllerutil.ContainsFinalizer(got, v1alpha1.AuditFinalizer) {
		t.Fatalf("audit status %+v, finalizers %v", got.Status.Audit, got.Finalizers)
	}

	// The delay is the same for every pass that computes it, and spread across events.
	first := retryDelay("a", 4, false)
	for range 3 {
		if d := retryDelay("a", 4, false); d != first {
			t.Errorf("the backoff of one failure differs between passes: %s, then %s", first, d)
		}
	}
	delays := map[time.Duration]bool{}
	for i := range 20 {
		d := retryDelay(fmt.Sprintf("event-%d", i), 4, false)
		if d < 4*time.Second || d > 8*time.Second {
			t.Errorf("the fourth failure's backoff is %s, want between 4s and 8s", d)
		}
		delays[d] = true
	}
	if len(delays) < 15 {
		t.Errorf("20 events' backoffs take %d values: no spread", len(delays))
	}
}
