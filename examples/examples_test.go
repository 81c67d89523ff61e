// Package examples_test checks the example actions without a cluster: each template passes the
// checks the ActionTemplate webhook runs, renders into the argv its README shows, and asks for
// no permission beyond the ceiling fragment shipped beside it. The examples' admission through
// a real API server is tested in webhooks/examples_test.go.
package examples_test

import (
	"go/scanner"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/grants"
	"github.com/kubernaut/kubernaut-executor/internal/render"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
)

// load decodes a YAML file of the example into obj, refusing unknown fields so that a typo in
// the example fails here rather than being pruned by the API server.
func load(t *testing.T, path string, obj any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Clean(path))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, obj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func kubectlLabel(t *testing.T) *v1alpha1.ActionTemplate { return template(t, "kubectl-label") }

// template loads the ActionTemplate of the example in folder dir.
func template(t *testing.T, dir string) *v1alpha1.ActionTemplate {
	t.Helper()
	tpl := &v1alpha1.ActionTemplate{}
	load(t, dir+"/actiontemplate.yaml", tpl)
	return tpl
}

// examples are the folders of the examples, each with a template and its ceiling fragment.
var examples = []string{"kubectl-label", "label-deployment"}

// TestTemplatesAreAdmissible runs the webhook's checks that need no cluster: the schema
// compiles, the items render with sample parameters, the env leaves the executor's variables
// alone and the rules hold no wildcard or escalating verb.
func TestTemplatesAreAdmissible(t *testing.T) {
	for _, dir := range examples {
		if errs := validation.Template(template(t, dir)); len(errs) > 0 {
			t.Errorf("%s: the template would be refused:\n%v", dir, errs.ToAggregate())
		}
	}
}

// TestCeilingFragments checks that each example's ceiling.yaml aggregates into the ceiling and
// covers its template's rules, and that its chart values add the same rules.
func TestCeilingFragments(t *testing.T) {
	for _, dir := range examples {
		tpl := template(t, dir)
		fragment := &rbacv1.ClusterRole{}
		load(t, dir+"/ceiling.yaml", fragment)
		if fragment.Labels[v1alpha1.LabelAggregateToCeiling] != "true" {
			t.Errorf("%s/ceiling.yaml lacks the label %s: \"true\"", dir, v1alpha1.LabelAggregateToCeiling)
		}
		if fragment.Name != "kubernaut-executor-ceiling-custom-"+tpl.Name {
			t.Errorf("%s/ceiling.yaml is %s, not the name the chart gives the same fragment", dir, fragment.Name)
		}
		if missing := grants.Uncovered(fragment.Rules, tpl.Spec.RBAC.Rules); missing != nil {
			t.Errorf("%s: the fragment does not cover %s", dir, grants.FormatRules(missing))
		}
		if missing := grants.Uncovered(nil, tpl.Spec.RBAC.Rules); missing == nil {
			t.Errorf("%s: an empty ceiling covers the rules: the test proves nothing", dir)
		}

		var values struct {
			Ceiling struct {
				ExtraFragments map[string][]rbacv1.PolicyRule `json:"extraFragments"`
			} `json:"ceiling"`
		}
		load(t, dir+"/values.yaml", &values)
		if got := values.Ceiling.ExtraFragments[tpl.Name]; !equalRules(got, fragment.Rules) {
			t.Errorf("%s: values.yaml adds %s, ceiling.yaml %s", dir, grants.FormatRules(got), grants.FormatRules(fragment.Rules))
		}
	}
}

// TestKubectlLabelGrant shows what an execution's ServiceAccount is given: the template's rules
// narrowed to the target Deployment.
func TestKubectlLabelGrant(t *testing.T) {
	got := grants.Narrow(kubectlLabel(t).Spec.RBAC.Rules,
		grants.Target{Group: "apps", Resource: "deployments", Name: "web", Namespace: "shop"})
	want := []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}, ResourceNames: []string{"web"}}}
	if !equalRules(got, want) {
		t.Fatalf("grant %s, want %s", grants.FormatRules(got), grants.FormatRules(want))
	}
}

// TestKubectlLabelExecution checks execution.yaml against the template as the execution webhook
// does, then renders the Job's argv for a dry run and for real.
func TestKubectlLabelExecution(t *testing.T) {
	tpl := kubectlLabel(t)
	obj := &v1alpha1.KubernetesExecution{}
	load(t, "kubectl-label/execution.yaml", obj)
	v := &validation.Validator{}
	if errs := append(v.Execution(obj, tpl), v.RenderErrors(obj, tpl)...); len(errs) > 0 {
		t.Fatalf("execution.yaml would be refused:\n%v", errs.ToAggregate())
	}
	if !obj.Spec.DryRun {
		t.Fatal("execution.yaml is the first run the README shows: a dry run")
	}

	for _, dryRun := range []bool{true, false} {
		params, err := render.Parameters(obj.Spec.Action.Parameters.Raw, tpl.Spec.Parameters.Raw)
		if err != nil {
			t.Fatal(err)
		}
		target := obj.Spec.Action.Target
		got, errs := render.Container(tpl.Spec.Command, tpl.Spec.Args, tpl.Spec.Env, &render.Data{
			Parameters: params,
			Target:     render.Target{Namespace: target.Namespace, Kind: target.ResourceKind, Name: target.ResourceName},
			Execution:  render.Execution{Name: obj.Name, Namespace: obj.Namespace, Attempt: 1},
			DryRun:     dryRun,
		})
		if len(errs) > 0 {
			t.Fatal(errs.ToAggregate())
		}
		mode := "none"
		if dryRun {
			mode = "server"
		}
		want := []string{"/bin/kubectl", "label", "deployment", "web", "--namespace=shop", "team=payments", "--overwrite", "--dry-run=" + mode}
		if argv := slices.Concat(got.Command, got.Args); !slices.Equal(argv, want) {
			t.Errorf("dryRun %v: argv %q, want %q", dryRun, argv, want)
		}
		if len(got.Env) != 1 || got.Env[0].Name != "HOME" || got.Env[0].Value != "/tmp" {
			t.Errorf("dryRun %v: env %v, want HOME=/tmp", dryRun, got.Env)
		}
	}
}

// TestKubectlLabelParameters checks that the schema keeps each parameter one label: nothing that
// kubectl would read as a flag, as a second label or as a removal (key-).
func TestKubectlLabelParameters(t *testing.T) {
	tests := []parameterCase{
		{"plain", `{"key":"team","value":"payments"}`, ""},
		{"prefixed key", `{"key":"example.com/team","value":"payments"}`, ""},
		{"empty value", `{"key":"team","value":""}`, ""},
		{"a flag as key", `{"key":"--all","value":"x"}`, "spec.action.parameters.key"},
		{"a short flag as key", `{"key":"-n","value":"x"}`, "spec.action.parameters.key"},
		{"a second label in the key", `{"key":"a=b c","value":"x"}`, "spec.action.parameters.key"},
		{"a removal", `{"key":"team-","value":"x"}`, "spec.action.parameters.key"},
		{"an empty key", `{"key":"","value":"x"}`, "spec.action.parameters.key"},
		{"a second label in the value", `{"key":"team","value":"x b=c"}`, "spec.action.parameters.value"},
		{"a value ending in a dash", `{"key":"team","value":"x-"}`, "spec.action.parameters.value"},
		{"a value too long", `{"key":"team","value":"` + strings.Repeat("x", 64) + `"}`, "spec.action.parameters.value"},
		{"no value", `{"key":"team"}`, "spec.action.parameters.value"},
		{"another parameter", `{"key":"team","value":"x","overwrite":false}`, "spec.action.parameters.overwrite"},
	}
	checkParameters(t, "kubectl-label", tests)
}

// parameterCase is parameters for an example's execution.yaml, and the field refused ("" when
// they are admitted).
type parameterCase struct{ name, params, wantField string }

// checkParameters runs the execution webhook's checks on the example's execution.yaml (which
// must pass) with each case's parameters instead.
func checkParameters(t *testing.T, dir string, tests []parameterCase) {
	t.Helper()
	tpl := template(t, dir)
	v := &validation.Validator{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := &v1alpha1.KubernetesExecution{}
			load(t, dir+"/execution.yaml", obj)
			if errs := append(v.Execution(obj, tpl), v.RenderErrors(obj, tpl)...); len(errs) > 0 {
				t.Fatalf("execution.yaml would be refused:\n%v", errs.ToAggregate())
			}
			obj.Spec.Action.Parameters.Raw = []byte(tt.params)
			errs := v.Execution(obj, tpl)
			if tt.wantField == "" {
				if len(errs) > 0 {
					t.Fatalf("refused:\n%v", errs.ToAggregate())
				}
				return
			}
			if len(errs) == 0 || !slices.ContainsFunc(errs, func(e *field.Error) bool { return e.Field == tt.wantField }) {
				t.Fatalf("errors %v, want one at %s", errs, tt.wantField)
			}
		})
	}
}

func equalRules(a, b []rbacv1.PolicyRule) bool {
	return slices.EqualFunc(a, b, func(x, y rbacv1.PolicyRule) bool {
		return slices.Equal(x.APIGroups, y.APIGroups) && slices.Equal(x.Resources, y.Resources) &&
			slices.Equal(x.Verbs, y.Verbs) && slices.Equal(x.ResourceNames, y.ResourceNames)
	})
}

// TestLabelDeploymentParameters checks that the schema admits exactly one of value and
// remove: true, so the action never has to choose, and execution.yaml.
func TestLabelDeploymentParameters(t *testing.T) {
	tests := []parameterCase{
		{"set", `{"key":"team","value":"payments"}`, ""},
		{"set empty", `{"key":"team","value":""}`, ""},
		{"set, remove false", `{"key":"team","value":"payments","remove":false}`, ""},
		{"remove", `{"key":"team","remove":true}`, ""},
		{"neither", `{"key":"team"}`, "spec.action.parameters.value"},
		{"both", `{"key":"team","value":"payments","remove":true}`, "spec.action.parameters.remove"},
		{"a bad key", `{"key":"team-","value":"x"}`, "spec.action.parameters.key"},
		{"another parameter", `{"key":"team","value":"x","overwrite":false}`, "spec.action.parameters.overwrite"},
	}
	checkParameters(t, "label-deployment", tests)
}

// TestGuideShowsTheExample checks that the Go action docs/authoring.md walks through is
// examples/label-deployment/main.go, the one the end-to-end spec runs, comments aside.
func TestGuideShowsTheExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/authoring.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "### In Go, with the SDK")
	_, code, ok2 := strings.Cut(section, "```go\n")
	code, _, ok3 := strings.Cut(code, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("docs/authoring.md has no Go block under \"In Go, with the SDK\"")
	}
	example, err := os.ReadFile("label-deployment/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := goTokens(t, []byte(code)), goTokens(t, example); !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("the guide's code differs from the example at token %d: %q, want %q", i, got[i], want[i])
			}
		}
		t.Fatalf("the guide's code has %d tokens, the example %d", len(got), len(want))
	}
}

// goTokens is src's Go tokens, without comments.
func goTokens(t *testing.T, src []byte) []string {
	t.Helper()
	fset := token.NewFileSet()
	var s scanner.Scanner
	s.Init(fset.AddFile("", fset.Base(), len(src)), src, func(pos token.Position, msg string) { t.Fatalf("%s: %s", pos, msg) }, 0)
	var out []string
	for {
		_, tok, lit := s.Scan()
		if tok == token.EOF {
			return out
		}
		out = append(out, tok.String()+lit)
	}
}
