package controllers

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
)

// observe gathers what decide needs: the time, the template and whether a new attempt may
// start, and the Job and pods of the attempt in flight. It writes nothing.
func (r *KubernetesExecutionReconciler) observe(ctx context.Context, obj *v1alpha1.KubernetesExecution, w *workCluster) (observation, error) {
	o := observation{Now: r.Clock.Now()}
	if r.Random != nil {
		o.Jitter = r.Random()
	}
	var err error
	if o.Template, o.Refusal, o.WaitingForTemplate, err = r.observeTemplate(ctx, obj); err != nil {
		return o, err
	}
	if a := lastAttempt(obj); a != nil && !a.Finished() {
		if o.Attempt, err = observeAttempt(ctx, w, obj, a); err != nil {
			return o, err
		}
	}
	if len(obj.Status.Attempts) == 0 && !obj.Status.Phase.IsTerminal() && o.Template != nil && o.Refusal == nil && o.WaitingForTemplate == "" {
		if o.Gate, err = r.observeGate(ctx, obj, o.Template, o.Now); err != nil {
			return o, err
		}
	}
	return o, nil
}

// observeTemplate fetches the execution's ActionTemplate (nil when it is gone) and repeats the
// admission checks that need no API call: the execution carries its admission record, the
// template is the one admitted and is ready, and the execution fits it. A failed check is a
// refusal. waiting is set while the template has not been checked yet and no attempt was made.
//
// The template is read without a copy: every reconcile reads it, and a template's parameter
// schema may be tens of KiB. What it returns shares its maps, slices and pointers with the
// cache, so it must never be changed.
func (r *KubernetesExecutionReconciler) observeTemplate(ctx context.Context, obj *v1alpha1.KubernetesExecution) (tpl *v1alpha1.ActionTemplate, refused *refusal, waiting string, err error) {
	tpl = &v1alpha1.ActionTemplate{}
	if err := r.Get(ctx, types.NamespacedName{Name: obj.Spec.Action.Type}, tpl, client.UnsafeDisableDeepCopy); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, nil, "", err
		}
		tpl = nil
	}
	rec := obj.Spec.Admission
	switch {
	case rec == nil:
		return tpl, &refusal{v1alpha1.ReasonRequesterNotRecorded,
			"the execution has no admission record (spec.admission): it was not admitted by the executor's webhook, so no requester's rights bound it and it never runs; create it again while the webhook is available"}, "", nil
	case tpl == nil && rec.TemplateUID == "":
		return nil, &refusal{v1alpha1.ReasonValidationFailed,
			fmt.Sprintf("spec.action.type: Not found: %q: no ActionTemplate defines this action", obj.Spec.Action.Type)}, "", nil
	case tpl == nil:
		return nil, &refusal{v1alpha1.ReasonTemplateChanged,
			fmt.Sprintf("ActionTemplate %q was deleted after the execution was admitted", obj.Spec.Action.Type)}, "", nil
	case tpl.UID != rec.TemplateUID:
		return tpl, &refusal{v1alpha1.ReasonTemplateChanged,
			fmt.Sprintf("ActionTemplate %q was replaced after the execution was admitted (it is a new object)", tpl.Name)}, "", nil
	case tpl.Generation != rec.TemplateGeneration:
		return tpl, &refusal{v1alpha1.ReasonTemplateChanged,
			fmt.Sprintf("ActionTemplate %q was edited after the execution was admitted (generation %d admitted, now %d)", tpl.Name, rec.TemplateGeneration, tpl.Generation)}, "", nil
	}
	switch ready, checked, message := validation.TemplateUsable(tpl); {
	case !checked && lastAttempt(obj) == nil:
		return tpl, nil, message, nil
	case !ready:
		return tpl, &refusal{v1alpha1.ReasonTemplateNotReady, fmt.Sprintf("ActionTemplate %q is not ready: %s", tpl.Name, message)}, "", nil
	}
	if errs := r.Validator.Execution(obj, tpl); len(errs) > 0 {
		return tpl, &refusal{v1alpha1.ReasonValidationFailed, errs.ToAggregate().Error()}, "", nil
	}
	return tpl, nil, "", nil
}

// observeAttempt reads the Job of the attempt in flight and the pods it controls: while it runs,
// whether an image cannot be pulled; once it finished, the action container's terminated state
// (from the API server, read once per attempt: the cache holds only pods that have not ended).
// A Job of that name that this execution does not control is not its Job: the attempt's Job is
// gone.
func observeAttempt(ctx context.Context, w *workCluster, obj *v1alpha1.KubernetesExecution, a *v1alpha1.Attempt) (*attemptFacts, error) {
	job, err := w.getJob(ctx, obj.Namespace, a.JobName)
	if err != nil {
		return nil, err
	}
	if job == nil || !w.owns(job, obj) {
		return &attemptFacts{JobGone: true}, nil
	}
	f := &attemptFacts{StartTime: job.Status.StartTime, CompletionTime: job.Status.CompletionTime}
	if c := jobFinishedCondition(job); c != nil {
		f.Finished = c.DeepCopy()
		// From the API server: the cache holds a pod only until it ends (CacheOptions).
		pods, err := jobPods(ctx, w.APIReader, job)
		if err != nil {
			return nil, err
		}
		f.Terminated, f.PodDeleted = finishedPods(pods, c)
		return f, nil
	}
	pods, err := jobPods(ctx, w.Client, job)
	if err != nil {
		return nil, err
	}
	for i := range pods {
		if f.ImagePull = imagePullFailed(&pods[i]); f.ImagePull != nil {
			return f, nil
		}
	}
	return f, nil
}
