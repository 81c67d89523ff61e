package controllers

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/audit"
)

// AuditOptions say where an execution's audit event goes once it has ended.
type AuditOptions struct {
	// Sink delivers events to the storage service; nil when none is configured: then each
	// event goes to the manager's log and an Event, and no execution waits for it.
	Sink audit.Sink
	// Deadline, when positive, lets availability win over completeness: an event not delivered
	// this long after its execution ended is logged in full and abandoned. Zero: never.
	Deadline time.Duration
	// Concurrency bounds the deliveries in flight (default 4).
	Concurrency int
	// Cluster names the cluster the actions run on, empty for the local one.
	Cluster string
}

// Enabled reports whether events go to a storage service, so executions carry the audit
// finalizer from creation.
func (o AuditOptions) Enabled() bool { return o.Sink != nil }

// Audit metrics, served on the manager's metrics endpoint.
var (
	auditDeliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kubernaut_audit_deliveries_total",
		Help: "Audit event deliveries by result: delivered, failed (retried with backoff), rejected (a defect, retried slowly), logged (no storage service), abandoned (past the audit deadline).",
	}, []string{"result"})
	auditDeliverySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "kubernaut_audit_delivery_seconds",
		Help:    "Time of one audit delivery to the storage service, acknowledged or not.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 13),
	})
	auditAbandoned = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kubernaut_audit_abandoned_total",
		Help: "Audit events logged in full and given up at the audit deadline instead of being delivered.",
	})
)

// auditReconcilers are the audit reconcilers of the managers running in the process (one, but
// for suites that run several), whose backlogs the backlog gauge adds up.
var auditReconcilers sync.Map

var auditBacklog = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
	Name: "kubernaut_audit_backlog",
	Help: "Executions that have ended and wait for their audit event to be acknowledged.",
}, func() float64 {
	n := 0
	auditReconcilers.Range(func(r, _ any) bool { n += r.(*AuditReconciler).Backlog(); return true })
	return float64(n)
})

func init() {
	metrics.Registry.MustRegister(auditDeliveries, auditDeliverySeconds, auditAbandoned, auditBacklog)
}

// whileRunning is a runnable that calls stop when its manager stops, leader or not.
type whileRunning func()

func (stop whileRunning) Start(ctx context.Context) error {
	<-ctx.Done()
	stop()
	return nil
}

// NeedLeaderElection lets it run on every replica.
func (whileRunning) NeedLeaderElection() bool { return false }

// AuditReconciler delivers the audit event of every execution that has ended, or is deleted
// before it ends, to the storage service, and then releases the execution's audit finalizer.
// The execution is the durable outbox: nothing is held in memory that a restart would lose, and
// a resend carries the same event id. Deliveries run on their own workers, so a slow or absent
// storage service never holds up the executions' own reconciling.
type AuditReconciler struct {
	client.Client
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	Options  AuditOptions
	// ActionImages maps template image names to the references run (as the executor maps them).
	ActionImages map[string]string

	backlog sync.Map // executions waiting for delivery, by key
}

// +kubebuilder:rbac:groups=kubernetesexecution.kubernaut.io,resources=kubernetesexecutions,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=kubernetesexecution.kubernaut.io,resources=kubernetesexecutions/status,verbs=get;patch

// Reconcile delivers one execution's audit event when it is due.
func (r *AuditReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := &v1alpha1.KubernetesExecution{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		r.backlog.Delete(req.NamespacedName)
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !r.Options.Enabled() {
		return ctrl.Result{}, r.logEnded(ctx, obj)
	}
	if !auditDue(obj) {
		r.backlog.Delete(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	r.backlog.Store(req.NamespacedName, struct{}{})
	ev, err := r.event(ctx, obj)
	if err != nil {
		return ctrl.Result{}, err
	}
	now := r.Clock.Now()
	before := obj.DeepCopy()
	if obj.Status.Audit == nil || obj.Status.Audit.EventID != ev.EventID {
		obj.Status.Audit = &v1alpha1.AuditStatus{EventID: ev.EventID}
	}
	st := obj.Status.Audit
	// Delivered already: a pass after the one that delivered it (whose finalizer patch met a
	// newer copy of the execution, or which woke on its own status write) only releases the
	// finalizer. Sending again would cost the storage service a request it refuses as a
	// duplicate.
	if st.DeliveredTime != nil {
		return ctrl.Result{}, r.release(ctx, before, obj)
	}

	ended := endTime(obj)
	if r.Options.Deadline > 0 && ended != nil && now.Sub(ended.Time) > r.Options.Deadline {
		_ = audit.LogSink{}.Send(ctx, ev) // LogSink never fails
		auditAbandoned.Inc()
		auditDeliveries.WithLabelValues("abandoned").Inc()
		r.setAudited(obj, metav1.ConditionFalse, v1alpha1.ReasonAuditAbandoned, fmt.Sprintf(
			"not delivered within the audit deadline (%s) after %d attempts; the event %s was written to the manager's log in full", r.Options.Deadline, st.Attempts, ev.EventID))
		return ctrl.Result{}, r.release(ctx, before, obj)
	}
	// A pass that comes before the backoff of the last failed delivery has passed (woken by
	// that failure's own status write, or by another controller's) sends nothing: it waits for
	// the backoff, or the audit deadline if that comes first.
	if wait := retryAt(obj).Sub(now); wait > 0 {
		if r.Options.Deadline > 0 && ended != nil {
			wait = min(wait, ended.Add(r.Options.Deadline).Sub(now)+time.Second)
		}
		return ctrl.Result{RequeueAfter: wait}, nil
	}

	start := time.Now()
	err = r.Options.Sink.Send(ctx, ev)
	auditDeliverySeconds.Observe(time.Since(start).Seconds())
	st.Attempts++
	st.LastAttemptTime = &metav1.Time{Time: now}
	if err == nil {
		st.DeliveredTime = &metav1.Time{Time: now}
		auditDeliveries.WithLabelValues("delivered").Inc()
		r.setAudited(obj, metav1.ConditionTrue, v1alpha1.ReasonAuditDelivered,
			fmt.Sprintf("event %s delivered at %s (attempt %d)", ev.EventID, now.UTC().Format(time.RFC3339), st.Attempts))
		return ctrl.Result{}, r.release(ctx, before, obj)
	}

	reason, result := v1alpha1.ReasonAuditDeliveryFailed, "failed"
	if audit.IsDefect(err) {
		reason, result = v1alpha1.ReasonAuditRejected, "rejected"
	}
	auditDeliveries.WithLabelValues(result).Inc()
	r.setAudited(obj, metav1.ConditionFalse, reason, fmt.Sprintf("attempt %d: %v", st.Attempts, err))
	if err := r.writeStatus(ctx, before, obj); err != nil {
		return ctrl.Result{}, err
	}
	if st.Attempts == 1 {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, reason, "Audit", "The audit event could not be delivered; the execution is kept until it is: %v", err)
	}
	delay := retryDelay(ev.EventID, st.Attempts, audit.IsDefect(err))
	log.FromContext(ctx).Info("audit delivery failed; retrying", "eventId", ev.EventID, "attempt", st.Attempts, "retryIn", delay, "error", err.Error())
	return ctrl.Result{RequeueAfter: delay}, nil
}

// retryDelay is how long to wait after the failures-th failed delivery of event id before
// sending it again: audit.DefaultBackoff, with a jitter drawn from the event id and the failure
// count. The jitter spreads the retries of many executions as a random one would, and is the
// same for every pass that computes it (retryAt), a restarted manager's included.
func retryDelay(id string, failures int32, defect bool) time.Duration {
	h := fnv.New64a()
	_, _ = fmt.Fprintf(h, "%s/%d", id, failures)
	jitter := float64(h.Sum64()>>11) / (1 << 53)
	return audit.DefaultBackoff.Delay(int(failures), defect, jitter)
}

// retryAt is when the execution's audit event may be sent again, from what its status records
// of the last failed delivery; the zero time when nothing failed, or once it was delivered.
func retryAt(obj *v1alpha1.KubernetesExecution) time.Time {
	st := obj.Status.Audit
	if st == nil || st.Attempts == 0 || st.LastAttemptTime == nil || st.DeliveredTime != nil {
		return time.Time{}
	}
	c := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionAudited)
	defect := c != nil && c.Reason == v1alpha1.ReasonAuditRejected
	// The stored time has whole seconds (RFC 3339): the attempt was up to a second later than
	// it says, so the retry is due a second later, never before its backoff has passed.
	return st.LastAttemptTime.Add(time.Second + retryDelay(st.EventID, st.Attempts, defect))
}

// logEnded writes the event of an execution that has ended to the manager's log and an Event,
// once, when no storage service is configured; nothing waits for it.
func (r *AuditReconciler) logEnded(ctx context.Context, obj *v1alpha1.KubernetesExecution) error {
	if !obj.Status.Phase.IsTerminal() || meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionAudited) != nil {
		return nil
	}
	ev, err := r.event(ctx, obj)
	if err != nil {
		return err
	}
	before := obj.DeepCopy()
	_ = audit.LogSink{}.Send(ctx, ev) // LogSink never fails
	obj.Status.Audit = &v1alpha1.AuditStatus{EventID: ev.EventID}
	r.setAudited(obj, metav1.ConditionTrue, v1alpha1.ReasonAuditLogged, fmt.Sprintf("event %s written to the manager's log (no storage service is configured)", ev.EventID))
	if err := r.writeStatus(ctx, before, obj); err != nil {
		return err
	}
	// After the status write: a pass on a stale copy fails that write and is retried (the log
	// line is written again, with the same event id), and counts and records the Event once,
	// when it succeeds.
	auditDeliveries.WithLabelValues("logged").Inc()
	r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, v1alpha1.ReasonAuditLogged, "Audit",
		"Audit event %s (%s, %s, requested by %s) written to the manager's log; no storage service is configured",
		ev.EventID, ev.Phase, ev.ActionType, requesterOf(ev))
	return nil
}

func requesterOf(ev audit.Event) string {
	if ev.Requester == nil {
		return "nobody recorded"
	}
	return ev.Requester.Username
}

// auditDue reports whether an execution's event is to be delivered now: it carries the audit
// finalizer and has ended, or is being deleted (cancelled).
func auditDue(obj *v1alpha1.KubernetesExecution) bool {
	return controllerutil.ContainsFinalizer(obj, v1alpha1.AuditFinalizer) &&
		(obj.Status.Phase.IsTerminal() || !obj.DeletionTimestamp.IsZero())
}

// event builds the execution's audit event with what only the cluster knows: the template's
// schema (for redaction), the image run and the measured resource usage. The template is read
// without a copy, as the execution's reconciler reads it: it is only read.
func (r *AuditReconciler) event(ctx context.Context, obj *v1alpha1.KubernetesExecution) (audit.Event, error) {
	in := audit.Inputs{Cluster: auditCluster(obj, r.Options.Cluster)}
	tpl := &v1alpha1.ActionTemplate{}
	switch err := r.Get(ctx, types.NamespacedName{Name: obj.Spec.Action.Type}, tpl, client.UnsafeDisableDeepCopy); {
	case err == nil:
		in.Template = tpl
		in.TemplateImage = tpl.Spec.Image
		if mapped, ok := r.ActionImages[tpl.Spec.Image]; ok {
			in.TemplateImage = mapped
		}
	case !apierrors.IsNotFound(err):
		return audit.Event{}, err
	}
	if res := obj.Status.Result; res != nil && res.ResourceUsage != nil {
		in.ResourceUsage = &audit.ResourceUsage{
			CPUSeconds: float64(res.ResourceUsage.CPUMillis) / 1000, PeakMemoryBytes: res.ResourceUsage.PeakMemoryBytes,
		}
	} else if len(obj.Status.Attempts) > 0 {
		in.ResourceUsageUnavailable = "NotReported"
	}
	return audit.Build(obj, in)
}

// release writes the status, then removes the audit finalizer: once the outcome of the delivery
// is recorded, nothing keeps the execution any longer.
func (r *AuditReconciler) release(ctx context.Context, before, obj *v1alpha1.KubernetesExecution) error {
	err := r.writeStatus(ctx, before, obj)
	if apierrors.IsConflict(err) {
		// The execution changed since this pass read it (the execution controller wrote it). The
		// delivery is recorded on the newer copy rather than forgotten: a pass that did not know
		// of it would send the event again.
		err = r.recordOnNewer(ctx, obj)
	}
	if err != nil {
		return err
	}
	orig := obj.DeepCopy()
	controllerutil.RemoveFinalizer(obj, v1alpha1.AuditFinalizer)
	if err := r.Patch(ctx, obj, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return client.IgnoreNotFound(err)
	}
	r.backlog.Delete(client.ObjectKeyFromObject(obj))
	return nil
}

func (r *AuditReconciler) writeStatus(ctx context.Context, before, obj *v1alpha1.KubernetesExecution) error {
	if equality.Semantic.DeepEqual(before.Status, obj.Status) {
		return nil
	}
	err := r.Status().Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
	if client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("writing the audit status: %w", err)
	}
	return nil
}

// recordOnNewer writes obj's audit status and Audited condition onto the newest copy of the
// execution the cache has, trying again while the copy is stale, and leaves that copy in obj.
func (r *AuditReconciler) recordOnNewer(ctx context.Context, obj *v1alpha1.KubernetesExecution) error {
	st := obj.Status.Audit.DeepCopy()
	audited := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionAudited).DeepCopy()
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		cur := &v1alpha1.KubernetesExecution{}
		if err := r.Get(ctx, client.ObjectKeyFromObject(obj), cur); err != nil {
			return err
		}
		before := cur.DeepCopy()
		cur.Status.Audit = st.DeepCopy()
		if audited != nil {
			meta.SetStatusCondition(&cur.Status.Conditions, *audited)
		}
		if err := r.writeStatus(ctx, before, cur); err != nil {
			return err
		}
		*obj = *cur
		return nil
	})
}

func (r *AuditReconciler) setAudited(obj *v1alpha1.KubernetesExecution, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionAudited, Status: status, Reason: reason, Message: message,
		ObservedGeneration: obj.Generation, LastTransitionTime: metav1.NewTime(r.Clock.Now()),
	})
}

// endTime is when the execution ended, or was deleted before it did.
func endTime(obj *v1alpha1.KubernetesExecution) *metav1.Time {
	if obj.Status.CompletionTime != nil {
		return obj.Status.CompletionTime
	}
	return obj.DeletionTimestamp
}

// Backlog is how many executions wait for their audit event to be delivered.
func (r *AuditReconciler) Backlog() int {
	n := 0
	r.backlog.Range(func(any, any) bool { n++; return true })
	return n
}

// SetupWithManager registers the reconciler for executions that carry the audit finalizer, on
// its own workers; the backlog gauge counts its backlog while its manager runs.
func (r *AuditReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Options.Concurrency <= 0 {
		r.Options.Concurrency = 4
	}
	// The backlog gauge counts this reconciler's backlog while its manager runs.
	auditReconcilers.Store(r, struct{}{})
	if err := mgr.Add(whileRunning(func() { auditReconcilers.Delete(r) })); err != nil {
		return err
	}
	// With a storage service, the executions that carry the finalizer; without one, the ended
	// executions not yet logged.
	carriesFinalizer := predicate.NewPredicateFuncs(func(o client.Object) bool {
		if r.Options.Enabled() {
			return controllerutil.ContainsFinalizer(o, v1alpha1.AuditFinalizer)
		}
		e := o.(*v1alpha1.KubernetesExecution)
		return e.Status.Phase.IsTerminal() && meta.FindStatusCondition(e.Status.Conditions, v1alpha1.ConditionAudited) == nil
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.KubernetesExecution{}, builder.WithPredicates(carriesFinalizer)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Options.Concurrency}).
		Named("audit").
		Complete(r)
}

// auditCluster is the cluster an execution's action ran on: its target cluster, or local, the
// executor's own cluster's name, for one without.
func auditCluster(obj *v1alpha1.KubernetesExecution, local string) string {
	if c := obj.Spec.Action.Target.Cluster; c != "" {
		return c
	}
	return local
}
