// Package chart tests the Helm chart's rendering for each values variant kept under the chart's
// ci/ folder, through the Helm SDK, and that what it installs matches templates/.
package chart

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
)

var chartDir = filepath.Join(e2eutil.RepoRoot(), "charts", "kubernaut-executor")

// render renders the chart as `helm install --dry-run` would, with the values of a ci/ file
// (or extra values), and returns its objects by kind.
func render(t *testing.T, valuesFile string, extra map[string]any) (map[string][]*unstructured.Unstructured, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]any{}
	if valuesFile != "" {
		raw, err := os.ReadFile(filepath.Join(chartDir, "ci", valuesFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(raw, &vals); err != nil {
			t.Fatal(err)
		}
		if vals == nil {
			vals = map[string]any{}
		}
	}
	for k, v := range extra {
		vals[k] = v
	}
	install := action.NewInstall(&action.Configuration{})
	install.DryRun, install.ClientOnly, install.Replace = true, true, true
	install.ReleaseName, install.Namespace = "kx", "kubernaut-system"
	install.KubeVersion = &chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}
	rel, err := install.Run(ch, vals)
	if err != nil {
		return nil, err
	}
	objs := map[string][]*unstructured.Unstructured{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewBufferString(rel.Manifest), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			objs[u.GetKind()] = append(objs[u.GetKind()], u)
		}
	}
	return objs, nil
}

func mustRender(t *testing.T, valuesFile string) map[string][]*unstructured.Unstructured {
	t.Helper()
	objs, err := render(t, valuesFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// predefinedFragments returns the fragments that carry a predefined action, by action name.
func predefinedFragments(t *testing.T, objs map[string][]*unstructured.Unstructured) map[string]*rbacv1.ClusterRole {
	out := map[string]*rbacv1.ClusterRole{}
	for _, u := range objs["ClusterRole"] {
		if name := u.GetLabels()["kubernaut.io/predefined-action"]; name != "" {
			out[name] = convert[rbacv1.ClusterRole](t, u)
		}
	}
	return out
}

func shippedTemplates(t *testing.T) map[string]*v1alpha1.ActionTemplate {
	files, err := filepath.Glob(filepath.Join(e2eutil.RepoRoot(), "templates", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no templates: %v", err)
	}
	out := map[string]*v1alpha1.ActionTemplate{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		tpl := &v1alpha1.ActionTemplate{}
		if err := yaml.UnmarshalStrict(raw, tpl); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[tpl.Name] = tpl
	}
	return out
}

// TestPredefinedTemplatesDoNotDrift fails when what the chart installs for an action differs from
// its template in templates/: the template the manager will create, and the fragment's rules.
func TestPredefinedTemplatesDoNotDrift(t *testing.T) {
	fragments := predefinedFragments(t, mustRender(t, "default-values.yaml"))
	shipped := shippedTemplates(t)
	if len(fragments) != len(shipped) {
		t.Fatalf("the chart installs %d actions by default, templates/ has %d", len(fragments), len(shipped))
	}
	for name, want := range shipped {
		fragment, ok := fragments[name]
		if !ok {
			t.Fatalf("the chart does not install %s", name)
		}
		got := &v1alpha1.ActionTemplate{}
		if err := yaml.UnmarshalStrict([]byte(fragment.Annotations["kubernaut.io/action-template"]), got); err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(got, want) {
			t.Errorf("%s: the chart's template differs from templates/%s.yaml", name, name)
		}
		if !equality.Semantic.DeepEqual(fragment.Rules, want.Spec.RBAC.Rules) {
			t.Errorf("%s: ceiling fragment rules %v differ from the template's %v", name, fragment.Rules, want.Spec.RBAC.Rules)
		}
	}
}

func TestDefaultValues(t *testing.T) {
	objs := mustRender(t, "default-values.yaml")
	for _, crd := range objs["CustomResourceDefinition"] {
		if crd.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
			t.Errorf("CRD %s is not kept on uninstall", crd.GetName())
		}
	}
	if len(objs["CustomResourceDefinition"]) != 2 {
		t.Errorf("%d CRDs", len(objs["CustomResourceDefinition"]))
	}
	if len(objs["PodDisruptionBudget"]) != 0 {
		t.Error("a PodDisruptionBudget for one replica")
	}
	secret := objs["Secret"]
	if len(secret) != 1 || secret[0].Object["data"].(map[string]any)["tls.crt"] == "" {
		t.Fatal("no generated webhook certificate")
	}
	hooks := objs["ValidatingWebhookConfiguration"][0].Object["webhooks"].([]any)
	var resources []string
	for _, h := range hooks {
		w := h.(map[string]any)
		if w["failurePolicy"] != "Fail" || fmt.Sprint(w["timeoutSeconds"]) != "5" {
			t.Errorf("webhook %v: failurePolicy %v, timeout %v", w["name"], w["failurePolicy"], w["timeoutSeconds"])
		}
		cc := w["clientConfig"].(map[string]any)
		if cc["caBundle"] == nil || cc["service"].(map[string]any)["name"] != "kx-kubernaut-executor-webhook" {
			t.Errorf("webhook %v: clientConfig %v", w["name"], cc)
		}
		for _, r := range w["rules"].([]any) {
			for _, res := range r.(map[string]any)["resources"].([]any) {
				resources = append(resources, res.(string))
			}
		}
	}
	sort.Strings(resources)
	if strings.Join(resources, ",") != "actiontemplates,kubernetesexecutions" {
		t.Errorf("the webhooks match %v, want only the executor's two resources", resources)
	}
	if len(predefinedFragments(t, objs)) != 7 {
		t.Errorf("%d predefined actions", len(predefinedFragments(t, objs)))
	}
	// The manager's role holds no escalating verb and no wildcard.
	for _, u := range objs["ClusterRole"] {
		for _, r := range convert[rbacv1.ClusterRole](t, u).Rules {
			for _, v := range append(append(r.Verbs, r.Resources...), r.APIGroups...) {
				if v == "*" || v == "escalate" || v == "bind" || v == "impersonate" {
					t.Errorf("ClusterRole %s grants %q", u.GetName(), v)
				}
			}
		}
	}
}

func TestEveryActionOff(t *testing.T) {
	objs := mustRender(t, "no-actions-values.yaml")
	if n := len(predefinedFragments(t, objs)); n != 0 {
		t.Fatalf("%d predefined actions with every action off", n)
	}
	found := false
	for _, u := range objs["ClusterRole"] {
		found = found || u.GetName() == "kubernaut-executor-ceiling"
	}
	if !found {
		t.Fatal("no ceiling")
	}
}

func TestCertManager(t *testing.T) {
	objs := mustRender(t, "cert-manager-values.yaml")
	if len(objs["Certificate"]) != 1 || len(objs["Issuer"]) != 1 || len(objs["Secret"]) != 0 {
		t.Fatalf("certificate %d, issuer %d, secret %d", len(objs["Certificate"]), len(objs["Issuer"]), len(objs["Secret"]))
	}
	vwc := objs["ValidatingWebhookConfiguration"][0]
	if vwc.GetAnnotations()["cert-manager.io/inject-ca-from"] != "kubernaut-system/kx-kubernaut-executor-webhook" {
		t.Errorf("annotations %v", vwc.GetAnnotations())
	}
	for _, h := range vwc.Object["webhooks"].([]any) {
		if _, ok := h.(map[string]any)["clientConfig"].(map[string]any)["caBundle"]; ok {
			t.Error("a caBundle with cert-manager injecting it")
		}
	}
}

func TestCustomCeilingFragment(t *testing.T) {
	objs := mustRender(t, "custom-fragment-values.yaml")
	for _, u := range objs["ClusterRole"] {
		if u.GetName() != "kubernaut-executor-ceiling-custom-scale-statefulset" {
			continue
		}
		role := convert[rbacv1.ClusterRole](t, u)
		if role.Labels["kubernaut.io/aggregate-to-ceiling"] != "true" || len(role.Rules) != 1 || role.Rules[0].Resources[0] != "statefulsets/scale" {
			t.Fatalf("fragment %+v", role)
		}
		return
	}
	t.Fatal("no custom fragment")
}

func TestTwoReplicas(t *testing.T) {
	objs := mustRender(t, "two-replicas-values.yaml")
	if len(objs["PodDisruptionBudget"]) != 1 {
		t.Fatal("no PodDisruptionBudget for two replicas")
	}
	d := convert[appsv1.Deployment](t, objs["Deployment"][0])
	if *d.Spec.Replicas != 2 || !contains(d.Spec.Template.Spec.Containers[0].Args, "--leader-elect=true") {
		t.Fatalf("replicas %d, args %v", *d.Spec.Replicas, d.Spec.Template.Spec.Containers[0].Args)
	}
}

// TestRestrictedPodSecurity evaluates the manager's pod with the Pod Security Standards'
// own checks at the restricted level, for every values variant.
func TestRestrictedPodSecurity(t *testing.T) {
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	for _, f := range files {
		objs := mustRender(t, filepath.Base(f))
		d := convert[appsv1.Deployment](t, objs["Deployment"][0])
		level := psapi.LevelVersion{Level: psapi.LevelRestricted, Version: psapi.LatestVersion()}
		for _, r := range eval.EvaluatePod(level, &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec) {
			if !r.Allowed {
				t.Errorf("%s: %s: %s", filepath.Base(f), r.ForbiddenReason, r.ForbiddenDetail)
			}
		}
	}
}

func TestBadValuesFailWithTheSchemasMessage(t *testing.T) {
	tests := []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"typo", map[string]any{"acitons": map[string]any{}}, "additional properties 'acitons' not allowed"},
		{"wrong type", map[string]any{"actions": map[string]any{"scale-deployment": "yes"}}, "at '/actions/scale-deployment': got string, want boolean"},
		{"unknown action", map[string]any{"actions": map[string]any{"reboot-cluster": true}}, "additional properties 'reboot-cluster' not allowed"},
		{"escalating custom fragment", map[string]any{"ceiling": map[string]any{"extraFragments": map[string]any{"x": []any{
			map[string]any{"apiGroups": []any{"rbac.authorization.k8s.io"}, "resources": []any{"roles"}, "verbs": []any{"escalate"}}}}}},
			"/ceiling/extraFragments/x/0/verbs/0"},
		{"replicas without leader election", map[string]any{"manager": map[string]any{"replicas": 2, "leaderElection": false}},
			"manager.replicas > 1 needs manager.leaderElection: true"},
		{"issuer without cert-manager", map[string]any{"certManager": map[string]any{"issuerRef": map[string]any{"name": "x"}}},
			"certManager.issuerRef is set but certManager.enabled is false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := render(t, "", tt.values)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestMain silences the Helm loader's notes about the chart's symbolic links into the
// repository (files/ points at templates/ and config/, the one source of each).
func TestMain(m *testing.M) {
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}
