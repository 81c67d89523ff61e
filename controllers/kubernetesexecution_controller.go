// Package controllers holds the executor's reconcilers.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

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
}

// imagePullReasons are the container waiting reasons with which a kubelet says it cannot get
// or start the image. The attempt fails at once instead of waiting out its deadline.
var imagePullReasons = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true,
}

// +kubebuilder:rbac:groups=kubernetesexecution.kubernaut.io,resources=kubernetesexecutions,verbs=get;list;watch
// +kubebuilder:rbac:groups=kubernetesexecution.kubernaut.io,resources=kubernetesexecutions/status,verbs=get;patch
// +kubebuilder:rbac:groups=kubernetesexecution.kubernaut.io,resources=actiontemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile moves one execution forward: it checks the execution against its template, starts
// the clock, observes the current attempt, enforces the timeout and starts the next attempt
// when one is due. Status is written once, at the end.
func (r *KubernetesExecutionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	obj := &v1alpha1.KubernetesExecution{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !obj.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, obj)
	}
	if err := r.stopAbandonedJobs(ctx, obj); err != nil {
		return ctrl.Result{}, err
	}
	if obj.Status.Phase.IsTerminal() {
		return ctrl.Result{}, r.reconcileDelete(ctx, obj)
	}
	if !controllerutil.ContainsFinalizer(obj, GrantFinalizer) {
		// Before any grant exists, so that none can outlive the execution.
		orig := obj.DeepCopy()
		controllerutil.AddFinalizer(obj, GrantFinalizer)
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

	now := r.Clock.Now()
	tpl, refused, err := r.reconcileTemplate(ctx, obj, now)
	if err != nil || (tpl == nil && refused == nil) {
		return ctrl.Result{}, err
	}
	r.reconcileStart(obj, now)
	if err := r.reconcileCurrentAttempt(ctx, obj, tpl, refused, now); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.reconcileTimeout(ctx, obj, tpl, now); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.reconcileNextAttempt(ctx, obj, tpl, refused, now); err != nil {
		return ctrl.Result{}, err
	}
	return r.requeue(obj, tpl, now), nil
}

// refusal is why no further attempt of an execution may start. An attempt already running is
// still observed to its end, so its outcome is never lost.
type refusal struct {
	reason, message string
}

// reconcileDelete revokes the execution's grant and then releases its finalizer: when the
// execution ends, and when it is deleted before it ends (its Jobs go with it through their
// owner references).
func (r *KubernetesExecutionReconciler) reconcileDelete(ctx context.Context, obj *v1alpha1.KubernetesExecution) error {
	if !controllerutil.ContainsFinalizer(obj, GrantFinalizer) {
		return nil
	}
	if err := r.revokeGrant(ctx, obj); err != nil {
		return err
	}
	orig := obj.DeepCopy()
	controllerutil.RemoveFinalizer(obj, GrantFinalizer)
	err := r.Patch(ctx, obj, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
	return client.IgnoreNotFound(err)
}

// reconcileTemplate fetches the execution's ActionTemplate (nil when it is gone) and repeats the
// admission checks that need no API call: the execution carries its admission record, the
// template is the one admitted and is ready, and the execution fits it. A failed check is a
// refusal: no new attempt starts, and a running one is observed to its end. It records Pending,
// and returns neither template nor refusal, while the template has not been checked yet.
func (r *KubernetesExecutionReconciler) reconcileTemplate(ctx context.Context, obj *v1alpha1.KubernetesExecution, now time.Time) (*v1alpha1.ActionTemplate, *refusal, error) {
	tpl := &v1alpha1.ActionTemplate{}
	if err := r.Get(ctx, types.NamespacedName{Name: obj.Spec.Action.Type}, tpl); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, nil, err
		}
		tpl = nil
	}
	rec := obj.Spec.Admission
	switch {
	case rec == nil:
		return tpl, &refusal{v1alpha1.ReasonRequesterNotRecorded,
			"the execution has no admission record (spec.admission): it was not admitted by the executor's webhook, so no requester's rights bound it and it never runs; create it again while the webhook is available"}, nil
	case tpl == nil && rec.TemplateUID == "":
		return nil, &refusal{v1alpha1.ReasonValidationFailed,
			fmt.Sprintf("spec.action.type: Not found: %q: no ActionTemplate defines this action", obj.Spec.Action.Type)}, nil
	case tpl == nil:
		return nil, &refusal{v1alpha1.ReasonTemplateChanged,
			fmt.Sprintf("ActionTemplate %q was deleted after the execution was admitted", obj.Spec.Action.Type)}, nil
	case tpl.UID != rec.TemplateUID:
		return tpl, &refusal{v1alpha1.ReasonTemplateChanged,
			fmt.Sprintf("ActionTemplate %q was replaced after the execution was admitted (it is a new object)", tpl.Name)}, nil
	case tpl.Generation != rec.TemplateGeneration:
		return tpl, &refusal{v1alpha1.ReasonTemplateChanged,
			fmt.Sprintf("ActionTemplate %q was edited after the execution was admitted (generation %d admitted, now %d)", tpl.Name, rec.TemplateGeneration, tpl.Generation)}, nil
	}
	switch ready, checked, message := validation.TemplateUsable(tpl); {
	case !checked && lastAttempt(obj) == nil:
		setPhase(obj, v1alpha1.PhasePending, v1alpha1.ReasonWaitingForTemplate, message, now)
		return nil, nil, nil
	case !ready:
		return tpl, &refusal{v1alpha1.ReasonTemplateNotReady, fmt.Sprintf("ActionTemplate %q is not ready: %s", tpl.Name, message)}, nil
	}
	if errs := r.Validator.Execution(obj, tpl); len(errs) > 0 {
		return tpl, &refusal{v1alpha1.ReasonValidationFailed, errs.ToAggregate().Error()}, nil
	}
	return tpl, nil, nil
}

// reconcileStart records when the executor first acted on the execution.
func (r *KubernetesExecutionReconciler) reconcileStart(obj *v1alpha1.KubernetesExecution, now time.Time) {
	if obj.Status.StartTime == nil {
		obj.Status.StartTime = &metav1.Time{Time: now}
	}
}

// reconcileCurrentAttempt observes the Job of the unfinished attempt, if any, and records how
// it ended: success completes the execution; failure leads to a retry or to Failed.
func (r *KubernetesExecutionReconciler) reconcileCurrentAttempt(ctx context.Context, obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate, refused *refusal, now time.Time) error {
	a := lastAttempt(obj)
	if a == nil || a.Finished() {
		return nil
	}
	job, err := r.getJob(ctx, obj.Namespace, a.JobName)
	if err != nil {
		return err
	}
	if job == nil {
		a.EndTime, a.Reason = &metav1.Time{Time: now}, v1alpha1.ReasonJobDeleted
		a.Message = fmt.Sprintf("Job %s was deleted before it finished", a.JobName)
		r.afterFailure(obj, tpl, refused, a, outcome{Error: a.Message}, now)
		return nil
	}
	a.StartTime = job.Status.StartTime

	finished := jobFinishedCondition(job)
	if finished == nil {
		return r.watchRunningAttempt(ctx, obj, tpl, refused, a, job, now)
	}

	o, err := r.attemptOutcome(ctx, job, a, finished)
	if err != nil {
		return err
	}
	a.EndTime = &finished.LastTransitionTime
	if job.Status.CompletionTime != nil {
		a.EndTime = job.Status.CompletionTime
	}
	disrupted := finished.Reason == batchv1.JobReasonPodFailurePolicy
	if disrupted {
		// Only a non-idempotent action's Job fails on disruption (see buildJob): its pod is
		// never run again by the Job controller.
		o.Success, o.Error = false, "the action's pod was disrupted: "+finished.Message
	}
	obj.Status.Result = &v1alpha1.ExecutionResult{
		Success: o.Success, Output: o.Output, Error: o.Error, Data: o.Data,
		StartTime: a.StartTime, EndTime: a.EndTime, ExitCode: a.ExitCode,
	}
	switch {
	case o.Success:
		a.Reason, a.Message = v1alpha1.ReasonSucceeded, truncate(o.Output)
		setPhase(obj, v1alpha1.PhaseCompleted, v1alpha1.ReasonSucceeded,
			fmt.Sprintf("The action succeeded on attempt %d", a.Number), now)
	case finished.Reason == batchv1.JobReasonDeadlineExceeded:
		a.Reason, a.Message = v1alpha1.ReasonDeadlineExceeded, finished.Message
		timeOut(obj, now)
	case disrupted:
		a.Reason, a.Message = v1alpha1.ReasonPodDisrupted, truncate(finished.Message)
		r.afterFailure(obj, tpl, refused, a, o, now)
	default:
		a.Reason, a.Message = v1alpha1.ReasonActionFailed, truncate(o.Error)
		r.afterFailure(obj, tpl, refused, a, o, now)
	}
	return nil
}

// watchRunningAttempt keeps a running attempt in Running, and ends it early when its pod
// cannot start because its image cannot be pulled (its Job is deleted once that is recorded).
func (r *KubernetesExecutionReconciler) watchRunningAttempt(ctx context.Context, obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate, refused *refusal, a *v1alpha1.Attempt, job *batchv1.Job, now time.Time) error {
	pods, err := r.jobPods(ctx, r.Client, job)
	if err != nil {
		return err
	}
	for i := range pods {
		for _, cs := range pods[i].Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && imagePullReasons[w.Reason] {
				a.EndTime, a.Reason = &metav1.Time{Time: now}, v1alpha1.ReasonImagePullFailed
				a.Message = truncate(fmt.Sprintf("%s: image %s: %s", w.Reason, cs.Image, w.Message))
				r.afterFailure(obj, tpl, refused, a, outcome{Error: a.Message}, now)
				return nil
			}
		}
	}
	setPhase(obj, v1alpha1.PhaseRunning, v1alpha1.ReasonProgressing,
		fmt.Sprintf("Attempt %d of %d is running as Job %s", a.Number, validation.MaxRetries(obj)+1, job.Name), now)
	return nil
}

// afterFailure decides what follows a failed attempt: a retry after backoff when the action is
// idempotent, the failure retryable, retries are left and nothing refuses a new attempt;
// otherwise Failed.
func (r *KubernetesExecutionReconciler) afterFailure(obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate, refused *refusal, a *v1alpha1.Attempt, o outcome, now time.Time) {
	if obj.Status.Result == nil || obj.Status.Result.Success {
		obj.Status.Result = &v1alpha1.ExecutionResult{Error: o.Error, StartTime: a.StartTime, EndTime: a.EndTime, ExitCode: a.ExitCode}
	}
	if refused != nil {
		failExecution(obj, refused.reason, fmt.Sprintf("attempt %d failed (%s) and no further attempt may start: %s", a.Number, o.Error, refused.message), now)
		return
	}
	if reason := nonRetryable(tpl, a); reason != "" {
		failExecution(obj, v1alpha1.ReasonNonRetryable,
			fmt.Sprintf("attempt %d failed and %s: %s", a.Number, reason, o.Error), now)
		return
	}
	retries := int32(len(obj.Status.Attempts)) - 1
	if max := validation.MaxRetries(obj); retries >= max {
		failExecution(obj, v1alpha1.ReasonMaxRetriesExceeded,
			fmt.Sprintf("max retries exceeded: %s failed (maxRetries %d); last error: %s", attemptsWord(len(obj.Status.Attempts)), max, o.Error), now)
		return
	}
	delay := r.Options.Backoff.Delay(retries+1, r.Random)
	obj.Status.NextRetryTime = &metav1.Time{Time: now.Add(delay)}
	setPhase(obj, v1alpha1.PhaseRetrying, v1alpha1.ReasonBackingOff,
		fmt.Sprintf("Attempt %d failed (%s); attempt %d starts in %s", a.Number, o.Error, a.Number+1, delay.Round(time.Millisecond)), now)
}

// nonRetryable says why a failed attempt must not be retried, or "" when it may be.
func nonRetryable(tpl *v1alpha1.ActionTemplate, a *v1alpha1.Attempt) string {
	p := tpl.Spec.RetryPolicy
	if p.Idempotent != nil && !*p.Idempotent {
		return fmt.Sprintf("action %q is not idempotent", tpl.Name)
	}
	if a.ExitCode != nil {
		for _, c := range p.NonRetryableExitCodes {
			if c == *a.ExitCode {
				return fmt.Sprintf("exit code %d means do not retry", c)
			}
		}
	}
	return ""
}

// reconcileTimeout ends the execution as TimedOut once its timeout has passed.
func (r *KubernetesExecutionReconciler) reconcileTimeout(ctx context.Context, obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate, now time.Time) error {
	if obj.Status.Phase.IsTerminal() || now.Before(deadline(obj, tpl)) {
		return nil
	}
	a := lastAttempt(obj)
	if a == nil || a.Finished() {
		timeOut(obj, now)
		return nil
	}
	a.EndTime, a.Reason = &metav1.Time{Time: now}, v1alpha1.ReasonTimedOut
	a.Message = "stopped at the execution's timeout"
	timeOut(obj, now)
	return nil
}

// timeOut records TimedOut. The Job of the last attempt is deleted by stopAbandonedJobs once
// this is written.
func timeOut(obj *v1alpha1.KubernetesExecution, now time.Time) {
	message := fmt.Sprintf("execution timed out after %s", ranFor(obj, now))
	if obj.Status.Result == nil {
		obj.Status.Result = &v1alpha1.ExecutionResult{}
	}
	obj.Status.Result.Success, obj.Status.Result.Error = false, message
	obj.Status.NextRetryTime = nil
	setPhase(obj, v1alpha1.PhaseTimedOut, v1alpha1.ReasonTimedOut, message, now)
}

// stopAbandonedJobs deletes the Jobs of attempts the status already records as ended by the
// executor (timed out, or unable to pull their image) while they may still run. It acts only on
// what the stored status says, so a status write that is lost never leaves a Job deleted
// without its reason recorded.
func (r *KubernetesExecutionReconciler) stopAbandonedJobs(ctx context.Context, obj *v1alpha1.KubernetesExecution) error {
	for _, a := range obj.Status.Attempts {
		switch a.Reason {
		case v1alpha1.ReasonTimedOut, v1alpha1.ReasonDeadlineExceeded, v1alpha1.ReasonImagePullFailed:
		default:
			continue
		}
		job := &batchv1.Job{}
		err := r.Get(ctx, types.NamespacedName{Namespace: obj.Namespace, Name: a.JobName}, job)
		if apierrors.IsNotFound(err) || (err == nil && job.DeletionTimestamp != nil) {
			continue
		}
		if err != nil {
			return err
		}
		if !metav1.IsControlledBy(job, obj) {
			continue // never delete a Job this execution does not control
		}
		if err := r.deleteJob(ctx, job); err != nil {
			return err
		}
		log.FromContext(ctx).Info("deleted the Job of an ended attempt", "job", job.Name, "reason", a.Reason)
	}
	return nil
}

// reconcileNextAttempt creates the Job of the next attempt when one is due: the first attempt,
// or a retry whose backoff has passed. A Job that already exists under the attempt's name (a
// status write lost after the create) is adopted, never created twice.
func (r *KubernetesExecutionReconciler) reconcileNextAttempt(ctx context.Context, obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate, refused *refusal, now time.Time) error {
	if obj.Status.Phase.IsTerminal() {
		return nil
	}
	a := lastAttempt(obj)
	if refused != nil && (a == nil || a.Finished()) {
		failExecution(obj, refused.reason, refused.message, now)
		return nil
	}
	switch {
	case a == nil:
	case a.Finished() && obj.Status.Phase == v1alpha1.PhaseRetrying && obj.Status.NextRetryTime != nil && !now.Before(obj.Status.NextRetryTime.Time):
	default:
		return nil
	}
	number := int32(len(obj.Status.Attempts)) + 1
	if job := (&batchv1.Job{}); r.Get(ctx, types.NamespacedName{Namespace: obj.Namespace, Name: JobName(obj.Name, number)}, job) == nil && metav1.IsControlledBy(job, obj) {
		// This pass runs on a copy of the execution older than the pass that checked and
		// created this attempt's Job: record it, without asking or granting again.
		startedAttempt(obj, number, job.Name, now)
		return nil
	}
	grant, errs := grants.Compute(r.RESTMapper(), tpl, obj.Spec.Action.Target, obj.Namespace)
	if len(errs) > 0 {
		failExecution(obj, v1alpha1.ReasonValidationFailed, errs.ToAggregate().Error(), now)
		return nil
	}
	// The requester's rights are checked again before every attempt: a right lost since
	// admission stops the execution.
	requester := obj.Spec.Admission.Requester
	missing, err := access.Missing(ctx, r.Client, requester, grant.Permissions())
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		failExecution(obj, v1alpha1.ReasonRequesterForbidden, fmt.Sprintf("attempt %d was not started: the requester %s may no longer %s",
			number, requester.Username, access.Describe(missing)), now)
		return nil
	}
	if err := r.reconcileGrant(ctx, obj, grant); err != nil {
		if !apierrors.IsForbidden(err) {
			return err
		}
		failExecution(obj, v1alpha1.ReasonGrantRefused, fmt.Sprintf("the API server refused the action's RBAC grant: %v", err), now)
		return nil
	}
	job, err := buildJob(jobInput{
		Execution: obj, Template: tpl, Attempt: number,
		Remaining: deadline(obj, tpl).Sub(now), TTL: r.Options.JobTTL, Images: r.Options.ActionImages,
		ServiceAccount: ExecutionServiceAccountName(obj.Name),
	})
	if err != nil {
		failExecution(obj, v1alpha1.ReasonValidationFailed, fmt.Sprintf("action %q cannot render: %v", tpl.Name, err), now)
		return nil
	}
	if err := controllerutil.SetControllerReference(obj, job, r.Scheme()); err != nil {
		return err
	}
	if err := r.Create(ctx, job); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating Job %s: %w", job.Name, err)
		}
		existing := &batchv1.Job{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(job), existing); err != nil {
			return err
		}
		if !metav1.IsControlledBy(existing, obj) {
			failExecution(obj, v1alpha1.ReasonValidationFailed,
				fmt.Sprintf("Job %s exists and does not belong to this execution", job.Name), now)
			return nil
		}
		log.FromContext(ctx).Info("adopted the Job of an attempt recorded before a restart", "job", job.Name, "attempt", number)
	}
	startedAttempt(obj, number, job.Name, now)
	return nil
}

// startedAttempt records that attempt number runs as Job jobName.
func startedAttempt(obj *v1alpha1.KubernetesExecution, number int32, jobName string, now time.Time) {
	obj.Status.Attempts = append(obj.Status.Attempts, v1alpha1.Attempt{Number: number, JobName: jobName})
	obj.Status.NextRetryTime = nil
	setPhase(obj, v1alpha1.PhaseRunning, v1alpha1.ReasonProgressing,
		fmt.Sprintf("Attempt %d of %d is running as Job %s", number, validation.MaxRetries(obj)+1, jobName), now)
}

// requeue asks to be called again when time alone would change the outcome: at the end of a
// backoff or at the timeout. Job and pod changes arrive through watches.
func (r *KubernetesExecutionReconciler) requeue(obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate, now time.Time) ctrl.Result {
	if obj.Status.Phase.IsTerminal() {
		return ctrl.Result{}
	}
	wake := deadline(obj, tpl)
	if t := obj.Status.NextRetryTime; t != nil && t.Time.Before(wake) {
		wake = t.Time
	}
	return ctrl.Result{RequeueAfter: max(wake.Sub(now), time.Millisecond)}
}

// writeStatus patches the status once, if it changed, guarded by the resourceVersion it was
// computed from, and records an Event when the phase changed.
func (r *KubernetesExecutionReconciler) writeStatus(ctx context.Context, before, obj *v1alpha1.KubernetesExecution) error {
	obj.Status.ObservedGeneration = obj.Generation
	obj.Status.RetryCount = max(int32(len(obj.Status.Attempts))-1, 0)
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
func (r *KubernetesExecutionReconciler) getJob(ctx context.Context, namespace, name string) (*batchv1.Job, error) {
	job := &batchv1.Job{}
	key := types.NamespacedName{Namespace: namespace, Name: name}
	err := r.Get(ctx, key, job)
	if apierrors.IsNotFound(err) {
		err = r.APIReader.Get(ctx, key, job)
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
func (r *KubernetesExecutionReconciler) deleteJob(ctx context.Context, job *batchv1.Job) error {
	err := r.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationBackground))
	return client.IgnoreNotFound(err)
}

// jobPods lists the pods of a Job: the ones the Job controls (owner reference and UID), not
// every pod that carries its labels.
func (r *KubernetesExecutionReconciler) jobPods(ctx context.Context, reader client.Reader, job *batchv1.Job) ([]corev1.Pod, error) {
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

// attemptOutcome reads the outcome of a finished Job from its action container's termination
// state, and records the exit code on the attempt. The pod is read from the cache, and from the
// API server when the cache does not show the container terminated yet.
func (r *KubernetesExecutionReconciler) attemptOutcome(ctx context.Context, job *batchv1.Job, a *v1alpha1.Attempt, finished *batchv1.JobCondition) (outcome, error) {
	term, err := r.terminatedState(ctx, r.Client, job)
	if err == nil && term == nil {
		term, err = r.terminatedState(ctx, r.APIReader, job)
	}
	if err != nil {
		return outcome{}, err
	}
	if term == nil {
		// No pod to read (it was removed, or never started): the Job condition is all there is.
		if finished.Type == batchv1.JobComplete {
			return outcome{Success: true}, nil
		}
		return outcome{Error: strings.TrimSpace(finished.Reason + ": " + finished.Message)}, nil
	}
	a.ExitCode = &term.ExitCode
	o := parseOutcome(term.Message, term.ExitCode)
	if finished.Type != batchv1.JobComplete {
		o.Success = false
		if o.Error == "" {
			o.Error = strings.TrimSpace(finished.Reason + ": " + finished.Message)
		}
	}
	return o, nil
}

// terminatedState returns the latest terminated state of the action container among the Job's
// pods, or nil.
func (r *KubernetesExecutionReconciler) terminatedState(ctx context.Context, reader client.Reader, job *batchv1.Job) (*corev1.ContainerStateTerminated, error) {
	pods, err := r.jobPods(ctx, reader, job)
	if err != nil {
		return nil, err
	}
	var latest *corev1.ContainerStateTerminated
	for i := range pods {
		for _, cs := range pods[i].Status.ContainerStatuses {
			t := cs.State.Terminated
			if cs.Name != ActionContainerName || t == nil {
				continue
			}
			if latest == nil || latest.FinishedAt.Before(&t.FinishedAt) {
				latest = t
			}
		}
	}
	return latest, nil
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

// deadline is when the execution times out. Without its template (deleted while an attempt
// runs), the execution's own timeout or the fallback applies; the Job's active deadline stops
// the attempt in any case.
func deadline(obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate) time.Time {
	if tpl == nil {
		tpl = &v1alpha1.ActionTemplate{}
	}
	return obj.Status.StartTime.Add(validation.Timeout(obj, tpl))
}

// truncate keeps attempt messages within the API's bound.
func truncate(s string) string {
	const limit = 1024
	if len(s) <= limit {
		return s
	}
	return s[:limit-len("…[truncated]")] + "…[truncated]"
}

// actionTypeIndex indexes executions by spec.action.type.
const actionTypeIndex = ".spec.action.type"

// SetupWithManager registers the reconciler: it watches executions, the Jobs they own, the
// pods of those Jobs (to see an image that cannot be pulled) and templates (an execution may
// wait for its template to be checked).
func (r *KubernetesExecutionReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.KubernetesExecution{}, actionTypeIndex, func(o client.Object) []string {
		return []string{o.(*v1alpha1.KubernetesExecution).Spec.Action.Type}
	}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.KubernetesExecution{}).
		Owns(&batchv1.Job{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.podToExecution)).
		Watches(&v1alpha1.ActionTemplate{}, handler.EnqueueRequestsFromMapFunc(r.templateToExecutions)).
		Named("kubernetesexecution").
		Complete(r)
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
