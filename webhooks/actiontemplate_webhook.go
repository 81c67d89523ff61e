package webhooks

import (
	"context"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
)

// ActionTemplateValidator admits a template only if it can work: its schema compiles, its
// templated strings render with the allowed functions within their limits, and its rules are plain and under the
// RBAC ceiling.
type ActionTemplateValidator struct {
	// Reader reads the ceiling ClusterRole.
	Reader client.Reader
	// CeilingName is the aggregated ClusterRole that bounds every template's rules.
	CeilingName string
}

// +kubebuilder:webhook:path=/validate-kubernetesexecution-kubernaut-io-v1alpha1-actiontemplate,mutating=false,failurePolicy=fail,sideEffects=None,groups=kubernetesexecution.kubernaut.io,resources=actiontemplates,verbs=create;update,versions=v1alpha1,name=vactiontemplate.kubernaut.io,admissionReviewVersions=v1,timeoutSeconds=5

var _ admission.Validator[*v1alpha1.ActionTemplate] = &ActionTemplateValidator{}

// ValidateCreate checks a new template.
func (v *ActionTemplateValidator) ValidateCreate(ctx context.Context, tpl *v1alpha1.ActionTemplate) (admission.Warnings, error) {
	return v.validate(ctx, tpl)
}

// ValidateUpdate checks a changed template as if it were new.
func (v *ActionTemplateValidator) ValidateUpdate(ctx context.Context, _, tpl *v1alpha1.ActionTemplate) (admission.Warnings, error) {
	return v.validate(ctx, tpl)
}

// ValidateDelete allows every deletion.
func (v *ActionTemplateValidator) ValidateDelete(context.Context, *v1alpha1.ActionTemplate) (admission.Warnings, error) {
	return nil, nil
}

func (v *ActionTemplateValidator) validate(ctx context.Context, tpl *v1alpha1.ActionTemplate) (admission.Warnings, error) {
	// The ceiling is read only when there are rules to fit under it; a missing ceiling covers
	// nothing.
	var ceiling *validation.Ceiling
	if len(tpl.Spec.RBAC.Rules) > 0 {
		role := &rbacv1.ClusterRole{}
		err := v.Reader.Get(ctx, types.NamespacedName{Name: v.CeilingName}, role)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, apierrors.NewInternalError(err)
		}
		ceiling = &validation.Ceiling{Name: v.CeilingName, Rules: role.Rules}
	}
	if errs := validation.AdmitTemplate(tpl, ceiling); len(errs) > 0 {
		return nil, invalid(tpl, errs)
	}
	return nil, nil
}
