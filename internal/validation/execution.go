// Package validation holds the checks of an execution against its template that need no API
// call. The admission webhook runs them at kubectl apply; the controller runs them again before
// it creates any Job, so a bypassed webhook still runs no bad Job.
package validation

import (
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/paramschema"
	"github.com/kubernaut/kubernaut-executor/internal/render"
)

// Fallbacks for templates whose defaulted fields are unset (objects built in Go, not through
// the API server, which applies the CRD defaults).
const (
	fallbackDefaultTimeout = 5 * time.Minute
	fallbackMaxTimeout     = 30 * time.Minute
)

var (
	actionPath = field.NewPath("spec", "action")
	targetPath = actionPath.Child("target")
)

// Validator checks executions against their templates. Its schema cache compiles each
// template generation's parameter schema once.
type Validator struct {
	Schemas paramschema.Cache
	// ProtectedNamespaces are the namespaces no execution may target unless its template allows
	// it (spec.allowProtectedNamespaces): the manager's --protected-namespaces and its own
	// namespace. Admission and the controller read the same list, so an execution admitted
	// before the list changed is refused before its first attempt too.
	ProtectedNamespaces []string
}

// Execution returns every way obj does not fit tpl: target, timeout, retries and parameters,
// and, when the parameters fit the schema, whether tpl renders with them.
func (v *Validator) Execution(obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate) field.ErrorList {
	var errs field.ErrorList
	spec := &obj.Spec
	target := spec.Action.Target

	if !slices.Contains(tpl.Spec.TargetKinds, target.ResourceKind) {
		errs = append(errs, field.NotSupported(targetPath.Child("resourceKind"), target.ResourceKind, tpl.Spec.TargetKinds))
	}
	if target.ResourceName == "" {
		errs = append(errs, field.Required(targetPath.Child("resourceName"), "the action needs an object to act on"))
	}
	// Whether the target needs a namespace depends on its kind's scope, which only the API
	// server's discovery knows: grants.Compute checks it, at admission and at grant time.
	if ns := target.Namespace; ns != "" && !tpl.Spec.AllowProtectedNamespaces && slices.Contains(v.ProtectedNamespaces, ns) {
		errs = append(errs, field.Forbidden(targetPath.Child("namespace"), fmt.Sprintf(
			"namespace %s is protected (the executor's --protected-namespaces); the action's template does not allow protected namespaces (spec.allowProtectedNamespaces)", ns)))
	}

	// 0s, as an upstream controller sends for a step without a timeout, means the default.
	for _, t := range []struct {
		name string
		d    *metav1.Duration
	}{{"timeout", spec.Timeout}, {"queueTimeout", spec.QueueTimeout}} {
		name, d := t.name, t.d
		if d == nil {
			continue
		}
		max := MaxTimeout(tpl)
		switch {
		case d.Duration < 0:
			errs = append(errs, field.Invalid(field.NewPath("spec", name), d.Duration.String(), "must not be negative (0s means the default)"))
		case d.Duration > max:
			errs = append(errs, field.Invalid(field.NewPath("spec", name), d.Duration.String(),
				fmt.Sprintf("must be at most %s, the maxTimeout of action %q", max, tpl.Name)))
		}
	}
	if spec.Approval == v1alpha1.ApprovalRequired && tpl.Spec.Approval == v1alpha1.ApprovalNever {
		errs = append(errs, field.Forbidden(field.NewPath("spec", "approval"),
			fmt.Sprintf("action %q never waits for approval (its template's approval is Never)", tpl.Name)))
	}
	if limit := tpl.Spec.RetryPolicy.MaxRetries; limit != nil && obj.Spec.MaxRetries != nil && *obj.Spec.MaxRetries > *limit {
		errs = append(errs, field.Invalid(field.NewPath("spec", "maxRetries"), *obj.Spec.MaxRetries,
			fmt.Sprintf("must be at most %d, the retry cap of action %q", *limit, tpl.Name)))
	}
	schema, err := v.Schemas.Get(tpl.UID, tpl.Generation, SchemaBytes(tpl))
	if err != nil {
		errs = append(errs, field.Invalid(field.NewPath("spec", "action", "type"), tpl.Name,
			fmt.Sprintf("the parameter schema of ActionTemplate %q does not compile: %v", tpl.Name, err)))
		return errs
	}
	return append(errs, paramschema.Validate(schema, RawParameters(obj))...)
}

// RenderErrors renders tpl's command, args and env with obj's parameters (defaults applied),
// target and name, as the Job of its first attempt would be, and returns each failure under
// spec.action.parameters: a template that renders with sample parameters may still fail, or
// pass a limit, with these.
func (v *Validator) RenderErrors(obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate) field.ErrorList {
	defaults, err := v.Schemas.Defaults(tpl.UID, tpl.Generation, SchemaBytes(tpl))
	if err != nil {
		return field.ErrorList{field.Invalid(paramschema.Path, field.OmitValueType{}, err.Error())}
	}
	params, err := defaults.Parameters(RawParameters(obj))
	if err != nil {
		return field.ErrorList{field.Invalid(paramschema.Path, field.OmitValueType{}, err.Error())}
	}
	target := obj.Spec.Action.Target
	data := &render.Data{
		Parameters: params,
		Target:     render.Target{Namespace: target.Namespace, Kind: target.ResourceKind, Name: target.ResourceName},
		Execution:  render.Execution{Name: obj.Name, Namespace: obj.Namespace, Attempt: 1},
		DryRun:     obj.Spec.DryRun,
	}
	_, renderErrs := render.Container(tpl.Spec.Command, tpl.Spec.Args, tpl.Spec.Env, data)
	var errs field.ErrorList
	for _, e := range renderErrs {
		errs = append(errs, field.Invalid(paramschema.Path, field.OmitValueType{},
			fmt.Sprintf("ActionTemplate %q does not render with these parameters: %s: %s", tpl.Name, e.Field, e.Detail)))
	}
	return errs
}

// SchemaBytes returns a template's parameter schema as raw JSON, nil when unset.
func SchemaBytes(tpl *v1alpha1.ActionTemplate) []byte {
	if tpl.Spec.Parameters == nil {
		return nil
	}
	return tpl.Spec.Parameters.Raw
}

// Timeout is the execution's effective timeout: its own, or its template's default.
func Timeout(obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate) time.Duration {
	if obj.Spec.Timeout != nil && obj.Spec.Timeout.Duration > 0 {
		return obj.Spec.Timeout.Duration
	}
	if d := tpl.Spec.DefaultTimeout; d != nil && d.Duration > 0 {
		return d.Duration
	}
	return fallbackDefaultTimeout
}

// QueueTimeout is how long the execution may wait to start: its own queueTimeout, or its
// timeout.
func QueueTimeout(obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate) time.Duration {
	if obj.Spec.QueueTimeout != nil && obj.Spec.QueueTimeout.Duration > 0 {
		return obj.Spec.QueueTimeout.Duration
	}
	return Timeout(obj, tpl)
}

// NeedsApproval reports whether the execution waits for a person's approval before it runs.
func NeedsApproval(obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate) bool {
	return tpl.Spec.Approval == v1alpha1.ApprovalPolicyRequired ||
		(obj.Spec.Approval == v1alpha1.ApprovalRequired && tpl.Spec.Approval != v1alpha1.ApprovalNever)
}

// MaxTimeout is the longest timeout tpl allows.
func MaxTimeout(tpl *v1alpha1.ActionTemplate) time.Duration {
	if d := tpl.Spec.MaxTimeout; d != nil && d.Duration > 0 {
		return d.Duration
	}
	return fallbackMaxTimeout
}

// MaxRetries is the execution's effective retry budget: its own spec.maxRetries, or the
// default (3) within the template's cap (tpl may be nil).
func MaxRetries(obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate) int32 {
	if obj.Spec.MaxRetries != nil {
		return *obj.Spec.MaxRetries
	}
	if tpl != nil && tpl.Spec.RetryPolicy.MaxRetries != nil {
		return min(v1alpha1.DefaultMaxRetries, *tpl.Spec.RetryPolicy.MaxRetries)
	}
	return v1alpha1.DefaultMaxRetries
}

// RawParameters returns the execution's parameters as raw JSON, nil when unset.
func RawParameters(obj *v1alpha1.KubernetesExecution) []byte {
	if obj.Spec.Action.Parameters == nil {
		return nil
	}
	return obj.Spec.Action.Parameters.Raw
}
