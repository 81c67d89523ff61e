package validation

import (
	"encoding/json"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/grants"
	"github.com/kubernaut/kubernaut-executor/internal/paramschema"
	"github.com/kubernaut/kubernaut-executor/internal/render"
)

var specPath = field.NewPath("spec")

// Template returns every way tpl cannot work, short of the RBAC ceiling (which needs the
// cluster): its parameter schema uses only local references and compiles; its command, args
// and env parse and render with values the schema allows (defaults, else examples, else a
// value of the property's type), using only the functions and within the limits of package
// render; its env does not override the executor's variables; its rules name what they grant;
// its timeouts are ordered.
func Template(tpl *v1alpha1.ActionTemplate) field.ErrorList {
	var errs field.ErrorList
	raw := SchemaBytes(tpl)
	if refErrs := paramschema.CheckRefs(raw, specPath.Child("parameters")); len(refErrs) > 0 {
		errs = append(errs, refErrs...)
	} else if _, err := paramschema.Compile(raw); err != nil {
		errs = append(errs, field.Invalid(specPath.Child("parameters"), "", "the JSON Schema does not compile: "+err.Error()))
	} else {
		errs = append(errs, renderErrors(tpl, SampleParameters(raw))...)
	}
	for i, e := range tpl.Spec.Env {
		if v1alpha1.ReservedEnv[e.Name] {
			errs = append(errs, field.Forbidden(specPath.Child("env").Index(i).Child("name"),
				fmt.Sprintf("%s is set by the executor and cannot be overridden", e.Name)))
		}
	}
	errs = append(errs, grants.CheckRules(tpl.Spec.RBAC.Rules, specPath.Child("rbac", "rules"))...)
	if d, m := tpl.Spec.DefaultTimeout, tpl.Spec.MaxTimeout; d != nil && m != nil && d.Duration > m.Duration {
		errs = append(errs, field.Invalid(specPath.Child("defaultTimeout"), d.Duration.String(),
			fmt.Sprintf("must not exceed maxTimeout (%s)", m.Duration)))
	}
	return errs
}

// Ceiling is the RBAC ceiling a template's rules must fit under: the rules of the aggregated
// ClusterRole the webhook reads, or of the ClusterRoles kubectl kubernaut validate reads from a
// file, and the name its messages give it.
type Ceiling struct {
	Name  string
	Rules []rbacv1.PolicyRule
}

// AdmitTemplate returns every reason the ActionTemplate webhook refuses tpl: Template's checks
// and, unless ceiling is nil, the rules ceiling does not cover. The webhook and kubectl
// kubernaut validate both call it, so a template that validates offline against the
// cluster's ceiling is admitted, and a refusal reads the same in both.
func AdmitTemplate(tpl *v1alpha1.ActionTemplate, ceiling *Ceiling) field.ErrorList {
	errs := Template(tpl)
	if ceiling == nil {
		return errs
	}
	if missing := grants.Uncovered(ceiling.Rules, tpl.Spec.RBAC.Rules); missing != nil {
		errs = append(errs, field.Forbidden(specPath.Child("rbac", "rules"),
			fmt.Sprintf("not covered by the RBAC ceiling %q: %s; an administrator must first add a ceiling fragment (a ClusterRole labelled %s=true)",
				ceiling.Name, grants.FormatRules(missing), v1alpha1.LabelAggregateToCeiling)))
	}
	return errs
}

// renderErrors renders the template's command, args and env with sample parameters.
func renderErrors(tpl *v1alpha1.ActionTemplate, params map[string]any) field.ErrorList {
	data := &render.Data{
		Parameters: params,
		Target:     render.Target{Namespace: "sample-namespace", Kind: first(tpl.Spec.TargetKinds), Name: "sample-name"},
		Execution:  render.Execution{Name: "sample-execution", Namespace: "sample-namespace", Attempt: 1},
	}
	_, errs := render.Container(tpl.Spec.Command, tpl.Spec.Args, tpl.Spec.Env, data)
	return errs
}

// SampleParameters builds parameters a schema accepts for a render check: each top-level
// property's default, else its first example, else a value of its type.
func SampleParameters(schema []byte) map[string]any {
	params := map[string]any{}
	var s struct {
		Properties map[string]struct {
			Type     any   `json:"type"`
			Default  any   `json:"default"`
			Examples []any `json:"examples"`
		} `json:"properties"`
	}
	if len(schema) == 0 || json.Unmarshal(schema, &s) != nil {
		return params
	}
	for name, p := range s.Properties {
		switch {
		case p.Default != nil:
			params[name] = p.Default
		case len(p.Examples) > 0:
			params[name] = p.Examples[0]
		default:
			params[name] = zeroOf(p.Type)
		}
	}
	return params
}

func zeroOf(t any) any {
	if list, ok := t.([]any); ok && len(list) > 0 {
		t = list[0]
	}
	switch t {
	case "integer", "number":
		return 0
	case "boolean":
		return false
	case "array":
		return []any{}
	case "object":
		return map[string]any{}
	}
	return ""
}

func first(list []string) string {
	if len(list) == 0 {
		return ""
	}
	return list[0]
}

// TemplateUsable says whether executions may run with tpl: Ready for its current generation.
// checked is false while the template's controller has not looked at this generation yet.
func TemplateUsable(tpl *v1alpha1.ActionTemplate) (ready, checked bool, message string) {
	c := meta.FindStatusCondition(tpl.Status.Conditions, v1alpha1.ConditionReady)
	if c == nil || c.ObservedGeneration != tpl.Generation {
		return false, false, fmt.Sprintf("waiting for ActionTemplate %q to be checked", tpl.Name)
	}
	return c.Status == metav1.ConditionTrue, true, c.Message
}
