package validation

import (
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

func countTemplate(args ...string) *v1alpha1.ActionTemplate {
	return &v1alpha1.ActionTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "count", UID: "uid-count", Generation: 1},
		Spec: v1alpha1.ActionTemplateSpec{
			Image: "kubernaut-actions", TargetKinds: []string{"Deployment"}, Args: args,
			Parameters: &apiextensionsv1.JSON{Raw: []byte(`{"type":"object","properties":{"n":{"type":"integer","default":2}}}`)},
		},
	}
}

func countExecution(params string) *v1alpha1.KubernetesExecution {
	return &v1alpha1.KubernetesExecution{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: "fix"},
		Spec: v1alpha1.KubernetesExecutionSpec{Action: v1alpha1.ActionSpec{
			Type: "count", Parameters: &apiextensionsv1.JSON{Raw: []byte(params)},
			Target: v1alpha1.TargetSpec{Namespace: "prod", ResourceKind: "Deployment", ResourceName: "web"},
		}},
	}
}

func TestTemplateRefusesRemoteReferences(t *testing.T) {
	tpl := countTemplate("{{ .Parameters.n }}")
	tpl.Spec.Parameters.Raw = []byte(`{"type":"object","properties":{"n":{"$ref":"https://example.com/n.json"}}}`)
	errs := Template(tpl)
	if len(errs) != 1 || errs[0].Error() != "spec.parameters.properties.n.$ref: Forbidden: only local references (#/...) are allowed" {
		t.Fatalf("errors %v", errs)
	}
}

func TestTemplateRenderLimits(t *testing.T) {
	errs := Template(countTemplate("ok", `{{ repeat 1500000000 "x" }}`))
	if len(errs) != 1 || errs[0].Field != "spec.args[1]" ||
		!strings.Contains(errs[0].Detail, `function "repeat" is not allowed in action templates: it can build output of any size`) {
		t.Fatalf("errors %v", errs)
	}
}

func TestExecutionRenders(t *testing.T) {
	tpl := countTemplate("{{ range (int .Parameters.n) }}x{{ end }}")
	tests := []struct {
		name, params string
		want         []string
	}{
		{name: "renders", params: `{"n":3}`},
		{name: "renders with the default", params: `{}`},
		{name: "passes a limit with these parameters", params: `{"n":1000000000}`, want: []string{
			`spec.action.parameters: Invalid value: ActionTemplate "count" does not render with these parameters: spec.args[0]: template: args:1:9: executing "args" at <range>: error calling range: a range may iterate at most 1000 times, not 1000000000`,
		}},
		// The schema's errors come alone: the template is rendered only with parameters that fit.
		{name: "schema errors first", params: `{"n":"many"}`, want: []string{
			`spec.action.parameters.n: Invalid value: "many": must be of type integer`,
		}},
	}
	v := &Validator{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// As the admission webhook checks: the fit first, then the rendering.
			errs := v.Execution(countExecution(tt.params), tpl)
			if len(errs) == 0 {
				errs = v.RenderErrors(countExecution(tt.params), tpl)
			}
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d: %v", len(errs), len(tt.want), errs)
			}
			for i, want := range tt.want {
				if errs[i].Error() != want {
					t.Errorf("error %d\n got %s\nwant %s", i, errs[i].Error(), want)
				}
			}
		})
	}
}

func TestAdmitTemplateCeiling(t *testing.T) {
	tpl := countTemplate("{{ .Parameters.n }}")
	tpl.Spec.RBAC.Rules = []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "delete"}}}
	if errs := AdmitTemplate(tpl, nil); len(errs) != 0 {
		t.Fatalf("without a ceiling: %v", errs)
	}
	ceiling := &Ceiling{Name: "the-ceiling", Rules: []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get"}}}}
	errs := AdmitTemplate(tpl, ceiling)
	want := `spec.rbac.rules: Forbidden: not covered by the RBAC ceiling "the-ceiling": delete apps/deployments; an administrator must first add a ceiling fragment (a ClusterRole labelled kubernaut.io/aggregate-to-ceiling=true)`
	if len(errs) != 1 || errs[0].Error() != want {
		t.Fatalf("errors %v\nwant %s", errs, want)
	}
}
