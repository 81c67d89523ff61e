// Package webhooks holds the executor's validating admission webhooks: a bad KubernetesExecution
// or ActionTemplate is rejected at kubectl apply, with every offending field named, before any
// Job exists.
package webhooks

import (
	"context"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/grants"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
)

// RequesterCheck says what happens when the requester of an execution may not do themselves
// what the action would do on the target.
type RequesterCheck string

const (
	// RequesterCheckEnforce rejects the execution (the default): the executor is never a
	// confused deputy.
	RequesterCheckEnforce RequesterCheck = "enforce"
	// RequesterCheckWarn admits it with a warning, for a trusted upstream controller.
	RequesterCheckWarn RequesterCheck = "warn"
)

// AccessReviewer answers SubjectAccessReviews. A client.Client does, through the API server.
type AccessReviewer interface {
	Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error
}

// KubernetesExecutionValidator admits an execution only if it fits its template and its
// requester may act on the target themselves.
type KubernetesExecutionValidator struct {
	// Reader reads ActionTemplates (the manager's cache).
	Reader client.Reader
	// Mapper finds the target kind's resource.
	Mapper meta.RESTMapper
	// Reviewer answers SubjectAccessReviews.
	Reviewer AccessReviewer
	// Validator holds the compiled parameter schemas, shared with the controller.
	Validator *validation.Validator
	// RequesterCheck is enforce or warn.
	RequesterCheck RequesterCheck
}

// +kubebuilder:webhook:path=/validate-kubernetesexecution-kubernaut-io-v1alpha1-kubernetesexecution,mutating=false,failurePolicy=fail,sideEffects=None,groups=kubernetesexecution.kubernaut.io,resources=kubernetesexecutions,verbs=create;update,versions=v1alpha1,name=vkubernetesexecution.kubernaut.io,admissionReviewVersions=v1,timeoutSeconds=5
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

var _ admission.Validator[*v1alpha1.KubernetesExecution] = &KubernetesExecutionValidator{}

// ValidateCreate checks a new execution.
func (v *KubernetesExecutionValidator) ValidateCreate(ctx context.Context, obj *v1alpha1.KubernetesExecution) (admission.Warnings, error) {
	return v.validate(ctx, obj)
}

// ValidateUpdate refuses any change to the spec. Other updates (finalizers, labels) pass: the
// execution was checked when it was created.
func (v *KubernetesExecutionValidator) ValidateUpdate(_ context.Context, oldObj, obj *v1alpha1.KubernetesExecution) (admission.Warnings, error) {
	if equality.Semantic.DeepEqual(oldObj.Spec, obj.Spec) {
		return nil, nil
	}
	return nil, invalid(obj, field.ErrorList{field.Forbidden(field.NewPath("spec"), "spec is immutable; create a new KubernetesExecution instead")})
}

// ValidateDelete allows every deletion.
func (v *KubernetesExecutionValidator) ValidateDelete(context.Context, *v1alpha1.KubernetesExecution) (admission.Warnings, error) {
	return nil, nil
}

func (v *KubernetesExecutionValidator) validate(ctx context.Context, obj *v1alpha1.KubernetesExecution) (admission.Warnings, error) {
	typePath := field.NewPath("spec", "action", "type")
	tpl := &v1alpha1.ActionTemplate{}
	if err := v.Reader.Get(ctx, types.NamespacedName{Name: obj.Spec.Action.Type}, tpl); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, invalid(obj, field.ErrorList{field.NotFound(typePath, obj.Spec.Action.Type)})
		}
		return nil, apierrors.NewInternalError(err)
	}
	var errs field.ErrorList
	if ready, _, message := validation.TemplateUsable(tpl); !ready {
		errs = append(errs, field.Invalid(typePath, obj.Spec.Action.Type, fmt.Sprintf("ActionTemplate %q is not ready: %s", tpl.Name, message)))
	}
	errs = append(errs, v.Validator.Execution(obj, tpl)...)

	var warnings admission.Warnings
	missing, err := v.requesterMissing(ctx, obj, tpl)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("the requester may not %s on %s themselves, and the executor acts for no one beyond their own rights",
			strings.Join(missing, ", "), describeTarget(obj))
		if v.RequesterCheck == RequesterCheckWarn {
			warnings = append(warnings, msg)
		} else {
			errs = append(errs, field.Forbidden(field.NewPath("spec", "action", "target"), msg))
		}
	}
	if len(errs) > 0 {
		return warnings, invalid(obj, errs)
	}
	return warnings, nil
}

// requesterMissing asks the API server, one SubjectAccessReview per permission, which of the
// things the action would do on the target the requester may not do.
func (v *KubernetesExecutionValidator) requesterMissing(ctx context.Context, obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate) ([]string, error) {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return nil, nil // not an admission request (a direct call): nobody to check
	}
	target, ok := grants.TargetOf(v.Mapper, tpl.Spec.RBAC.Rules, obj.Spec.Action.Target.ResourceKind)
	if !ok {
		return nil, nil
	}
	user := req.UserInfo
	var missing []string
	for _, p := range grants.TargetPermissions(tpl.Spec.RBAC.Rules, target) {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user.Username, Groups: user.Groups, UID: user.UID, Extra: extra(user.Extra),
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: obj.Spec.Action.Target.Namespace, Verb: p.Verb, Group: p.Group,
				Resource: p.Resource, Subresource: p.Subresource, Name: obj.Spec.Action.Target.ResourceName,
			},
		}}
		if err := v.Reviewer.Create(ctx, sar); err != nil {
			return nil, fmt.Errorf("asking whether %s may %s: %w", user.Username, p, err)
		}
		if !sar.Status.Allowed {
			missing = append(missing, p.String())
		}
	}
	return missing, nil
}

func extra(in map[string]authenticationv1.ExtraValue) map[string]authorizationv1.ExtraValue {
	if in == nil {
		return nil
	}
	out := make(map[string]authorizationv1.ExtraValue, len(in))
	for k, v := range in {
		out[k] = authorizationv1.ExtraValue(v)
	}
	return out
}

func describeTarget(obj *v1alpha1.KubernetesExecution) string {
	t := obj.Spec.Action.Target
	if t.Namespace == "" {
		return fmt.Sprintf("%s %s", t.ResourceKind, t.ResourceName)
	}
	return fmt.Sprintf("%s %s/%s", t.ResourceKind, t.Namespace, t.ResourceName)
}

// rejections counts the causes of rejected requests, by resource and field error type.
var rejections = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "kubernaut_admission_rejections_total",
	Help: "Causes of requests the webhooks rejected, by resource and reason (the field error's type).",
}, []string{"resource", "reason"})

func init() { metrics.Registry.MustRegister(rejections) }

// invalid wraps field errors as the API server's own Invalid error, so kubectl prints each cause
// with its path, and counts them.
func invalid(obj client.Object, errs field.ErrorList) error {
	kind, resource := "KubernetesExecution", "kubernetesexecutions"
	if _, ok := obj.(*v1alpha1.ActionTemplate); ok {
		kind, resource = "ActionTemplate", "actiontemplates"
	}
	for _, e := range errs {
		rejections.WithLabelValues(resource, string(e.Type)).Inc()
	}
	return apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind(kind).GroupKind(), obj.GetName(), errs)
}
