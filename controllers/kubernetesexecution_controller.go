// Package controllers holds the executor's reconcilers.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/access"
	"github.com/kubernaut/kubernaut-executor/internal/grants"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
)

// ExecutorOptions are the manager's settings for running executions.
type ExecutorOptions struct {
	// Backoff spaces the attempts of a failing execution.
	Backoff Backoff
	// JobTTL is how long a finished Job (and its pod's log) is kept.
	JobTTL time.Duration
	// ActionImages maps an image name used in templates (for example kubernaut-actions) to the
	// reference to run, so templates need not pin the project's release.
	ActionImages map[string]string
	// MaxRunningJobs caps the executions running at once (an attempt made, not ended), 0 for no
	// cap; one over it waits in Pending (QueueFull) until another ends.
	MaxRunningJobs int
}

// KubernetesExecutionReconciler runs each KubernetesExecution as one Job per attempt and
// records the outcome in its status.
type KubernetesExecutionReconciler struct {
	client.Client
	// APIReader reads from the API server directly, to tell a Job that is gone from one the
	// cache has not seen yet.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// Clock is the time source for timeouts and backoff.
	Clock clock.PassiveClock
	// Random returns a number in [0, 1) for backoff jitter.
	Random  func() float64
	Options ExecutorOptions
	// Validator repeats the admission checks, so a bypassed webhook still runs no bad Job.
	Validator *validation.Validator
	// AuditEnabled puts the audit finalizer on every execution from its first reconcile, so
	// that none goes before its audit event is delivered (see AuditReconciler).
	AuditEnabled bool
	// MaxConcurrentReconciles is how many executions are reconciled at once (one when not set).
	MaxConcurrentReconciles int
	// Reviewer answers the SubjectAccessReviews that check the requester before each attempt
	// (the client when nil; the manager shares a caching one with the webhook).
	Reviewer access.Creator
	// Clusters are the registered target clusters; nil when none may be used.
	Clusters *ClusterRegistry
	// SweepInterval is how often each connected target cluster is swept of the grants and Jobs
	// of executions that no longer exist (DefaultSweepInterval when not set); it is also swept
	// as it connects.
	SweepInterval time.Duration

	remote remoteWatches
}

// imagePullReasons are the container waiting reasons with which a kubelet says it cannot get
// or start the image. The attempt fails at once instead of waiting out its deadline.
var imagePullReasons = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true,
}

// +kubebuilder:rbac:groups=kubernetesexecution.kubernaut.io,resources=kubernetesexecutions,verbs=get;list;watch
// +kubebuilder:rbac:groups=kubernetesexecution.kubernaut.io,resources=kubernetesexecutions/status,verbs=get;patch
// +kubebuilder:rbac:groups=kubernetesexecution.kubernaut.io,resources=actiontemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile moves one execution forward in three steps: observe gathers the facts (the
// template and whether a new attempt may start, the Job and pods of the attempt in flight, the
// time); decide, a pure function, turns them into the new status and the effects (start an
// attempt, when to look again); act starts the attempt, and the status is written once, at the
// end, and only if it changed. A terminal execution's grant is revoked and its finalizer
// released.
//
// The ActionTemplate a pass works with is the cache's own object, read without a copy (see
// observeTemplate): nothing in a pass changes it, and what a pass builds from it (the Job, the
// grant) copies what it keeps.
func (r *KubernetesExecutionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	obj := &v1alpha1.KubernetesExecution{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	w, unavailable, registered := r.workClusterFor(obj)
	if !obj.DeletionTimestamp.IsZero() || (obj.Status.Phase.IsTerminal() && w == nil) {
		return r.reconcileDelete(ctx, obj, w, registered)
	}
	if w != nil {
		if err := r.settleEndedJobs(ctx, obj, w); err != nil {
			return ctrl.Result{}, err
		}
	}
	if obj.Status.Phase.IsTerminal() {
		return r.reconcileDelete(ctx, obj, w, registered)
	}
	if !controllerutil.ContainsFinalizer(obj, v1alpha1.GrantFinalizer) || (r.AuditEnabled && !controllerutil.ContainsFinalizer(obj, v1alpha1.AuditFinalizer)) {
		// Before any grant exists, so that none can outlive the execution; and before anything
		// happens that must be audited.
		orig := obj.DeepCopy()
		controllerutil.AddFinalizer(obj, v1alpha1.GrantFinalizer)
		if r.AuditEnabled {
			controllerutil.AddFinalizer(obj, v1alpha1.AuditFinalizer)
		}
		if err := r.Patch(ctx, obj, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}

	before := obj.DeepCopy()
	defer func() {
		if err := r.writeStatus(ctx, before, obj); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	if w == nil {
		return ctrl.Result{RequeueAfter: r.clusterFailure(ctx, obj, unavailable, registered, r.Clock.Now())}, nil
	}
	o, err := r.observe(ctx, obj, w)
	if err != nil {
		return ctrl.Result{}, err
	}
	d := decide(obj, o, r.Options.Backoff)
	obj.Status = d.Status
	if d.StartAttempt > 0 {
		if err := r.startAttempt(ctx, obj, w, o.Template, d.StartAttempt, o.Now); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{RequeueAfter: d.RequeueAfter}, nil
}

// reconcileDelete revokes the execution's grant and then releases its finalizer: when the
// execution ends, and when it is deleted before it ends (its Jobs go with it, through their
// owner references in the executor's cluster, deleted here in a target cluster).
//
// In a target cluster that does not answer, the finalizer is kept until it does. In one that is
// no longer registered nothing can be revoked: the finalizer is kept until the cluster is
// registered again, or released when the execution is deleted, and then its grant and Jobs are
// swept when the cluster is registered again (sweepCluster).
func (r *KubernetesExecutionReconciler) reconcileDelete(ctx context.Context, obj *v1alpha1.KubernetesExecution, w *workCluster, registered bool) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(obj, v1alpha1.GrantFinalizer) {
		return ctrl.Result{}, nil
	}
	switch {
	case w == nil && registered:
		return ctrl.Result{RequeueAfter: clusterUnreachableRetry}, nil
	case w == nil && obj.DeletionTimestamp.IsZero():
		// Kept until the cluster is registered again (clusterChanged wakes the execution,
		// which then stops its Job and revokes its grant there) or the execution is deleted.
		return ctrl.Result{}, nil
	case w != nil:
		if err := r.revokeGrant(ctx, obj, w); err != nil {
			return ctrl.Result{}, err
		}
		if w.remote() && !obj.DeletionTimestamp.IsZero() {
			if err := w.deleteJobsOf(ctx, obj); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	orig := obj.DeepCopy()
	controllerutil.RemoveFinalizer(obj, v1alpha1.GrantFinalizer)
	err := r.Patch(ctx, obj, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
	return ctrl.Result{}, client.IgnoreNotFound(err)
}

// settleEndedJobs acts on the Jobs of the attempts the stored status records as ended, and only
// on those, so that nothing can take a Job away before its outcome is recorded:
//   - the Jobs of attempts the executor ended itself (timed out, or unable to pull their image)
//     are deleted, since they may still run;
//   - the other ended attempts' Jobs get their TTL (--job-ttl), which starts the Job controller's
//     clock on them. They are created without one: a TTL set at creation would let the Job
//     controller delete a finished Job and its pod, and the outcome with them, while the
//     manager is down.
//
// A status write that is lost therefore never leaves a Job deleted, or deletable, without its
// outcome recorded.
func (r *KubernetesExecutionReconciler) settleEndedJobs(ctx context.Context, obj *v1alpha1.KubernetesExecution, w *workCluster) error {
	for _, a := range obj.Status.Attempts {
		if a.EndTime == nil {
			continue
		}
		job := &batchv1.Job{}
		err := w.Get(ctx, types.NamespacedName{Namespace: obj.Namespace, Name: a.JobName}, job)
		if apierrors.IsNotFound(err) || (err == nil && job.DeletionTimestamp != nil) {
			continue
		}
		if err != nil {
			return err
		}
		if !w.owns(job, obj) {
			continue // never touch a Job this execution does not control
		}
		switch a.Reason {
		case v1alpha1.ReasonTimedOut, v1alpha1.ReasonDeadlineExceeded, v1alpha1.ReasonImagePullFailed, v1alpha1.ReasonClusterNotFound:
			if err := w.deleteJob(ctx, job); err != nil {
				return err
			}
			log.FromContext(ctx).Info("deleted the Job of an ended attempt", "job", job.Name, "reason", a.Reason)
			continue
		}
		if job.Spec.TTLSecondsAfterFinished != nil {
			continue
		}
		ttl := int32(min(r.Options.JobTTL.Seconds(), math.MaxInt32))
		patch := fmt.Appendf(nil, `{"spec":{"ttlSecondsAfterFinished":%d}}`, ttl)
		if err := w.Patch(ctx, job, client.RawPatch(types.MergePatchType, patch)); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	return nil
}

// startAttempt starts attempt number: the checks that need the API server come first (the
// grant, computed through discovery, and the recorded requester's rights, asked again before
// every attempt), then the grant and the Job. A check that fails ends the execution. A Job that
// already exists under the attempt's name (created by a pass on a newer copy, or before a
// restart) is recorded, never created twice.
func (r *KubernetesExecutionReconciler) startAttempt(ctx context.Context, obj *v1alpha1.KubernetesExecution, w *workCluster, tpl *v1alpha1.ActionTemplate, number int32, now time.Time) error {
	// A pass that runs on a copy of the execution older than the pass that checked and created
	// this attempt's Job (the cache had not yet seen that pass's status write) finds the Job,
	// on the API server when the cache does not show it yet, and records it without asking or
	// granting again: one read instead of the reviews and the failed creates.
	if job, err := w.getJob(ctx, obj.Namespace, JobName(obj.Name, number)); err != nil {
		return err
	} else if job != nil && w.owns(job, obj) {
		startedAttempt(obj, tpl, number, job.Name, now)
		return nil
	}
	grant, errs := grants.Compute(w.RESTMapper(), tpl, obj.Spec.Action.Target, obj.Namespace)
	if len(errs) > 0 {
		failExecution(obj, v1alpha1.ReasonValidationFailed, errs.ToAggregate().Error(), now)
		return nil
	}
	requester := obj.Spec.Admission.Requester
	reviewer := r.Reviewer
	if reviewer == nil {
		reviewer = r.Client
	}
	perms := grant.Permissions()
	if w.remote() {
		// The requester must still be allowed to act in the cluster, here; then the target
		// cluster's API server judges their rights there, under their name there.
		missing, err := access.Missing(ctx, reviewer, requester, []grants.Permission{access.ExecuteOnCluster(w.name)})
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			failExecution(obj, v1alpha1.ReasonRequesterForbidden, fmt.Sprintf("attempt %d was not started: the requester %s may no longer execute on cluster %q",
				number, requester.Username, w.name), now)
			return nil
		}
		reviewer = w.Client
		if requester, err = w.cluster.Identity(requester); err != nil {
			failExecution(obj, v1alpha1.ReasonRequesterForbidden, fmt.Sprintf("attempt %d was not started: the requester %s has no identity on cluster %q: %v",
				number, obj.Spec.Admission.Requester.Username, w.name, err), now)
			return nil
		}
	}
	missing, err := access.Missing(ctx, reviewer, requester, perms)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		failExecution(obj, v1alpha1.ReasonRequesterForbidden, fmt.Sprintf("attempt %d was not started: the requester %s may no longer %s",
			number, access.DescribeAs(obj.Spec.Admission.Requester, requester, w.name), access.Describe(missing)), now)
		return nil
	}
	if gone, err := w.targetGone(ctx, grant.Target); err != nil {
		return err
	} else if gone {
		// Before the first attempt the target may never have existed: say only what is known.
		state := "does not exist"
		if number > 1 {
			state = "no longer exists"
		}
		failExecution(obj, v1alpha1.ReasonTargetNotFound, fmt.Sprintf("attempt %d was not started: the target %s %s %s",
			number, obj.Spec.Action.Target.ResourceKind, targetName(obj.Spec.Action.Target), state), now)
		return nil
	}
	if err := w.reconcileGrant(ctx, obj, grant); err != nil {
		if !apierrors.IsForbidden(err) {
			return err
		}
		failExecution(obj, v1alpha1.ReasonGrantRefused, fmt.Sprintf("the API server refused the action's RBAC grant: %v", err), now)
		return nil
	}
	job, err := buildJob(jobInput{
		Execution: obj, Template: tpl, Attempt: number,
		Remaining: deadline(obj, tpl).Sub(now), Images: r.Options.ActionImages,
		ServiceAccount: ExecutionServiceAccountName(obj.Name),
	})
	if err != nil {
		failExecution(obj, v1alpha1.ReasonValidationFailed, fmt.Sprintf("action %q cannot render: %v", tpl.Name, err), now)
		return nil
	}
	if w.remote() {
		markRemote(job, obj)
	} else if err := controllerutil.SetControllerReference(obj, job, r.Scheme()); err != nil {
		return err
	}
	if err := w.Create(ctx, job); err != nil {
		if w.remote() && apierrors.IsNotFound(err) {
			failExecution(obj, v1alpha1.ReasonValidationFailed, fmt.Sprintf(
				"attempt %d was not started: the namespace %q does not exist in cluster %q (an execution's Jobs run in a namespace of its own namespace's name there)",
				number, obj.Namespace, w.name), now)
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating Job %s: %w", job.Name, err)
		}
		existing := &batchv1.Job{}
		if err := w.APIReader.Get(ctx, client.ObjectKeyFromObject(job), existing); err != nil {
			return err
		}
		if !w.owns(existing, obj) {
			failExecution(obj, v1alpha1.ReasonValidationFailed,
				fmt.Sprintf("Job %s exists and does not belong to this execution", job.Name), now)
			return nil
		}
		log.FromContext(ctx).Info("adopted the Job of an attempt recorded before a restart", "job", job.Name, "attempt", number)
	}
	startedAttempt(obj, tpl, number, job.Name, now)
	return nil
}

// targetGone reports whether the API server says the target does not exist: deleted since the
// execution was admitted, or since its last attempt. It reads the target's metadata with the
// manager's own rights, which the ceiling gives for the actions' targets; when they do not cover
// reading it, the attempt starts and the action finds out.
func (w *workCluster) targetGone(ctx context.Context, t grants.Target) (bool, error) {
	gvk, err := w.RESTMapper().KindFor(schema.GroupVersionResource{Group: t.Group, Resource: t.Resource})
	if err != nil {
		return false, err
	}
	obj := &metav1.PartialObjectMetadata{}
	obj.SetGroupVersionKind(gvk)
	err = w.APIReader.Get(ctx, types.NamespacedName{Namespace: t.Namespace, Name: t.Name}, obj)
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err == nil || apierrors.IsForbidden(err):
		return false, nil
	}
	return false, err
}

// targetName is namespace/name, or name for a cluster-scoped target.
func targetName(t v1alpha1.TargetSpec) string {
	if t.Namespace == "" {
		return t.ResourceName
	}
	return t.Namespace + "/" + t.ResourceName
}

// writeStatus patches the status once, if it changed, guarded by the resourceVersion it was
// computed from, and records an Event when the phase changed.
func (r *KubernetesExecutionReconciler) writeStatus(ctx context.Context, before, obj *v1alpha1.KubernetesExecution) error {
	obj.Status.ObservedGeneration = obj.Generation
	// As the upstream controller counts: one more each time the execution enters Retrying.
	obj.Status.RetryCount = max(attemptCount(obj)-1, 0)
	if obj.Status.Phase == v1alpha1.PhaseRetrying {
		obj.Status.RetryCount++
	}
	if equality.Semantic.DeepEqual(before.Status, obj.Status) {
		return nil
	}
	patch := client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})
	if err := r.Status().Patch(ctx, obj, patch); err != nil {
		if apierrors.IsConflict(err) {
			// The status was computed from a copy older than the stored object. The newer
			// version's watch event reconciles again; what this pass did is found anew (a Job it
			// created is adopted by name).
			log.FromContext(ctx).V(1).Info("status computed from a stale copy; waiting for the newer one")
			return nil
		}
		return fmt.Errorf("writing status: %w", err)
	}
	if before.Status.Phase != obj.Status.Phase {
		r.recordPhase(obj)
		if obj.Status.Phase.IsTerminal() {
			recordEnd(obj)
		}
	}
	return nil
}

// recordPhase emits one Event for the execution's new phase, carrying the Ready message.
func (r *KubernetesExecutionReconciler) recordPhase(obj *v1alpha1.KubernetesExecution) {
	eventType := corev1.EventTypeNormal
	switch obj.Status.Phase {
	case v1alpha1.PhaseRetrying, v1alpha1.PhaseFailed, v1alpha1.PhaseTimedOut:
		eventType = corev1.EventTypeWarning
	}
	for _, c := range obj.Status.Conditions {
		if c.Type == v1alpha1.ConditionReady {
			r.Recorder.Eventf(obj, nil, eventType, c.Reason, string(obj.Status.Phase), "%s", c.Message)
		}
	}
}

// getJob reads a Job from the cache, and confirms with the API server before saying it is
// gone (nil), since a Job created moments ago may not be in the cache yet.
func (w *workCluster) getJob(ctx context.Context, namespace, name string) (*batchv1.Job, error) {
	job := &batchv1.Job{}
	key := types.NamespacedName{Namespace: namespace, Name: name}
	err := w.Get(ctx, key, job)
	if apierrors.IsNotFound(err) {
		err = w.APIReader.Get(ctx, key, job)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return job, nil
}

// deleteJob deletes a Job and, through the garbage collector, its pods.
func (w *workCluster) deleteJob(ctx context.Context, job *batchv1.Job) error {
	err := w.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationBackground))
	return client.IgnoreNotFound(err)
}

// deleteJobsOf deletes every Job of obj in a target cluster, where no owner reference lets the
// garbage collector do it when obj is deleted.
// One by one, so that the executor's credentials there need no deletecollection.
func (w *workCluster) deleteJobsOf(ctx context.Context, obj *v1alpha1.KubernetesExecution) error {
	jobs := &batchv1.JobList{}
	if err := w.APIReader.List(ctx, jobs, client.InNamespace(obj.Namespace), client.MatchingLabels{v1alpha1.LabelExecutionUID: string(obj.UID)}); err != nil {
		return err
	}
	for i := range jobs.Items {
		if err := w.deleteJob(ctx, &jobs.Items[i]); err != nil {
			return err
		}
	}
	return nil
}

// jobPods lists the pods of a Job: the ones the Job controls (owner reference and UID), not
// every pod that carries its labels.
func jobPods(ctx context.Context, reader client.Reader, job *batchv1.Job) ([]corev1.Pod, error) {
	pods := &corev1.PodList{}
	if err := reader.List(ctx, pods, client.InNamespace(job.Namespace),
		client.MatchingLabels{batchv1.ControllerUidLabel: string(job.UID)}); err != nil {
		return nil, err
	}
	owned := pods.Items[:0]
	for _, p := range pods.Items {
		if metav1.IsControlledBy(&p, job) {
			owned = append(owned, p)
		}
	}
	return owned, nil
}

// finishedPods reads a finished Job's pods: the action container's latest terminated state
// (nil when no pod shows one), and whether the action was stopped by its pod's deletion rather
// than ending by itself. A pod deleted while it ran (kubectl delete, a controller cleaning up)
// carries no DisruptionTarget condition, so the Job's pod failure policy does not see it: the
// Job fails as if the action had, and the kubelet's kill signal is its exit code. Deleted means:
//   - a pod whose deletion was asked for before its action container ended (its deletion
//     timestamp less its grace period); or
//   - a failed Job with no pod left at all. With a backoff limit of 0 and no TTL yet, nothing
//     but a deletion removes a failed Job's only pod (the Job controller keeps failed pods, and
//     the TTL is set only once the outcome is recorded), and its outcome can no longer be read.
func finishedPods(pods []corev1.Pod, finished *batchv1.JobCondition) (latest *corev1.ContainerStateTerminated, deleted bool) {
	var latestPod *corev1.Pod
	for i := range pods {
		for _, cs := range pods[i].Status.ContainerStatuses {
			t := cs.State.Terminated
			if cs.Name == ActionContainerName && t != nil && (latest == nil || latest.FinishedAt.Before(&t.FinishedAt)) {
				latest, latestPod = t, &pods[i]
			}
		}
	}
	if finished.Type != batchv1.JobFailed {
		return latest, false
	}
	if latestPod != nil {
		requested := deletionRequested(latestPod)
		return latest, requested != nil && !latest.FinishedAt.Before(requested)
	}
	// No action container ended by itself: the pods were deleted before it ran, or are gone.
	for i := range pods {
		if pods[i].DeletionTimestamp == nil {
			return nil, false
		}
	}
	return nil, true
}

// deletionRequested is when the pod's deletion was asked for, nil when it was not: its deletion
// timestamp is that moment plus the grace period (the time by which it must be gone).
func deletionRequested(pod *corev1.Pod) *metav1.Time {
	del := pod.DeletionTimestamp
	if del == nil {
		return nil
	}
	var grace time.Duration
	if g := pod.DeletionGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	return &metav1.Time{Time: del.Add(-grace)}
}

// jobFinishedCondition returns the Job's Complete or Failed condition once it is True.
func jobFinishedCondition(job *batchv1.Job) *batchv1.JobCondition {
	for i, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return &job.Status.Conditions[i]
		}
	}
	return nil
}

// truncate keeps an attempt's message short (the API allows 4 KiB; the result keeps the whole
// output), cut at a rune boundary with the contract's marker.
func truncate(s string) string { return v1alpha1.TruncateUTF8(s, 1024) }

// actionTypeIndex indexes executions by spec.action.type.
const actionTypeIndex = ".spec.action.type"

// SetupWithManager registers the reconciler, on MaxConcurrentReconciles workers: it watches
// executions, the Jobs they own (once finished, or deleted), the pods of those Jobs (while one
// waits on an image that cannot be pulled) and templates (an execution may wait for its
// template to be checked).
func (r *KubernetesExecutionReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.KubernetesExecution{}, actionTypeIndex, actionTypeIndexFunc); err != nil {
		return err
	}
	if err := indexQueue(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}
	waitingReaders.Store(r, struct{}{})
	r.remote.wake = make(chan event.GenericEvent, 1024)
	c, err := ctrl.NewControllerManagedBy(mgr).
		WatchesRawSource(source.Channel(r.remote.wake, &handler.EnqueueRequestForObject{})).
		Watches(&v1alpha1.KubernetesExecution{}, executionEvents).
		Watches(&v1alpha1.KubernetesExecution{}, r.queueEvents()).
		Watches(&batchv1.Job{}, attemptJobEvents, builder.WithPredicates(jobEvents)).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.podToExecution), builder.WithPredicates(podEvents)).
		Watches(&v1alpha1.ActionTemplate{}, handler.EnqueueRequestsFromMapFunc(r.templateToExecutions)).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1)}).
		Named("kubernetesexecution").
		Build(r)
	if err != nil {
		return err
	}
	r.remote.controller = c
	return nil
}

// The execution controller's queue hands out the work of executions that have started (an
// attempt's Job finished, a status written, a grant to revoke) before the first pass of a new
// execution. In order of arrival alone, a burst of new executions would queue ahead of the
// outcomes and revocations of the ones already running: with 10,000 created at once, all 10,000
// attempts started before the first outcome was recorded, and every grant lived that long.
const (
	priorityNew     = 0
	priorityStarted = 1
)

// priorityOf is the priority of an execution's reconcile: started once it has an attempt, an end
// or a deletion to act on.
func priorityOf(o client.Object) int {
	obj, ok := o.(*v1alpha1.KubernetesExecution)
	if ok && len(obj.Status.Attempts) == 0 && !obj.Status.Phase.IsTerminal() && obj.DeletionTimestamp.IsZero() {
		return priorityNew
	}
	return priorityStarted
}

// enqueue adds req with priority to q, or plainly to a queue without priorities.
func enqueue(q workqueue.TypedRateLimitingInterface[reconcile.Request], req reconcile.Request, priority int) {
	if pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request]); ok {
		pq.AddWithOpts(priorityqueue.AddOpts{Priority: &priority}, req)
		return
	}
	q.Add(req)
}

func requestFor(o client.Object) reconcile.Request {
	return reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)}
}

// executionEvents enqueues an execution for its own events, by priorityOf.
var executionEvents = handler.TypedFuncs[client.Object, reconcile.Request]{
	CreateFunc: func(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		enqueue(q, requestFor(e.Object), priorityOf(e.Object))
	},
	UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		enqueue(q, requestFor(e.ObjectNew), priorityOf(e.ObjectNew))
	},
	DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		enqueue(q, requestFor(e.Object), priorityStarted)
	},
	GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		enqueue(q, requestFor(e.Object), priorityOf(e.Object))
	},
}

// attemptJobEvents enqueues, for an event of a Job, the execution that controls it: work of a
// started execution.
var attemptJobEvents = handler.TypedFuncs[client.Object, reconcile.Request]{
	CreateFunc: func(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		enqueueOwner(q, e.Object)
	},
	UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		enqueueOwner(q, e.ObjectNew)
	},
	DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		enqueueOwner(q, e.Object)
	},
	GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		enqueueOwner(q, e.Object)
	},
}

// enqueueOwner enqueues the execution that controls job, if one does.
func enqueueOwner(q workqueue.TypedRateLimitingInterface[reconcile.Request], job client.Object) {
	owner := metav1.GetControllerOf(job)
	if owner == nil || owner.Kind != "KubernetesExecution" || owner.APIVersion != v1alpha1.GroupVersion.String() {
		return
	}
	enqueue(q, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: job.GetNamespace(), Name: owner.Name}}, priorityStarted)
}

// jobEvents lets through the Job events that can change an execution: its Job finished (or is
// found finished when the manager starts) or is gone. A Job's creation and progress (its pod
// created, started, ready) change nothing the execution records, and would each cost a
// reconcile of it.
var jobEvents = predicate.Funcs{
	CreateFunc:  func(e event.CreateEvent) bool { return jobFinished(e.Object) },
	UpdateFunc:  func(e event.UpdateEvent) bool { return jobFinished(e.ObjectNew) && !jobFinished(e.ObjectOld) },
	DeleteFunc:  func(event.DeleteEvent) bool { return true },
	GenericFunc: func(event.GenericEvent) bool { return true },
}

func jobFinished(o client.Object) bool {
	job, ok := o.(*batchv1.Job)
	return !ok || jobFinishedCondition(job) != nil
}

// podEvents lets through the events of pods whose action container waits on an image that
// cannot be pulled, the one thing the executor reads of a pod before its Job finishes (what a
// finished Job's pod says is read when the Job's own event arrives). A pod's other progress
// would each cost a reconcile that changes nothing.
var podEvents = predicate.NewPredicateFuncs(func(o client.Object) bool {
	pod, ok := o.(*corev1.Pod)
	return !ok || imagePullFailed(pod) != nil
})

// imagePullFailed returns the first container of pod that waits on an image a kubelet cannot
// get or start, nil when none does.
func imagePullFailed(pod *corev1.Pod) *imagePullFailure {
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && imagePullReasons[w.Reason] {
			return &imagePullFailure{Reason: w.Reason, Image: cs.Image, Message: w.Message}
		}
	}
	return nil
}

// templateToExecutions maps a template to the executions that run it and have not finished.
func (r *KubernetesExecutionReconciler) templateToExecutions(ctx context.Context, tpl client.Object) []reconcile.Request {
	list := &v1alpha1.KubernetesExecutionList{}
	if err := r.List(ctx, list, client.MatchingFields{actionTypeIndex: tpl.GetName()}); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, e := range list.Items {
		if !e.Status.Phase.IsTerminal() {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&e)})
		}
	}
	return out
}

// podToExecution maps a Job's pod to the execution that owns the Job.
func (r *KubernetesExecutionReconciler) podToExecution(ctx context.Context, pod client.Object) []reconcile.Request {
	jobName := pod.GetLabels()[batchv1.JobNameLabel]
	if jobName == "" {
		return nil
	}
	job := &batchv1.Job{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: pod.GetNamespace(), Name: jobName}, job); err != nil {
		return nil
	}
	owner := metav1.GetControllerOf(job)
	if owner == nil || owner.Kind != "KubernetesExecution" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: job.Namespace, Name: owner.Name}}}
}
