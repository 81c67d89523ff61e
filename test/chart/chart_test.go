// Package chart tests the Helm chart's rendering for each values variant kept under the chart's
// ci/ folder, through the Helm SDK, and that what it installs matches templates/.
package chart

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
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
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
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
	manifests := []string{rel.Manifest}
	for _, h := range rel.Hooks {
		manifests = append(manifests, h.Manifest)
	}
	for _, m := range manifests {
		for _, u := range decode(t, m) {
			objs[u.GetKind()] = append(objs[u.GetKind()], u)
		}
	}
	return objs, nil
}

// decode returns the objects of a multi-document YAML stream.
func decode(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewBufferString(manifest), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
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

// predefinedConfigMaps returns the ConfigMaps that hold a predefined action's template, by
// action name.
func predefinedConfigMaps(t *testing.T, objs map[string][]*unstructured.Unstructured) map[string]*corev1.ConfigMap {
	out := map[string]*corev1.ConfigMap{}
	for _, u := range objs["ConfigMap"] {
		if name := u.GetLabels()[v1alpha1.LabelPredefinedAction]; name != "" {
			out[name] = convert[corev1.ConfigMap](t, u)
		}
	}
	return out
}

// predefinedFragments returns the ceiling fragments of the predefined actions, by action name.
func predefinedFragments(t *testing.T, objs map[string][]*unstructured.Unstructured) map[string]*rbacv1.ClusterRole {
	out := map[string]*rbacv1.ClusterRole{}
	for _, u := range objs["ClusterRole"] {
		if name := u.GetLabels()[v1alpha1.LabelPredefinedAction]; name != "" {
			out[name] = convert[rbacv1.ClusterRole](t, u)
		}
	}
	return out
}

// shippedTemplates returns the templates in templates/ by name.
func shippedTemplates(t *testing.T) map[string]*v1alpha1.ActionTemplate {
	out := map[string]*v1alpha1.ActionTemplate{}
	for _, tpl := range shippedFiles(t) {
		out[tpl.Name] = tpl
	}
	return out
}

// TestPredefinedTemplatesDoNotDrift fails when what the chart installs for an action differs from
// its template in templates/: the template the manager will create from the action's ConfigMap,
// and the fragment's rules. The fragments carry no template.
func TestPredefinedTemplatesDoNotDrift(t *testing.T) {
	objs := mustRender(t, "default-values.yaml")
	fragments, configMaps := predefinedFragments(t, objs), predefinedConfigMaps(t, objs)
	shipped := shippedTemplates(t)
	if len(fragments) != len(shipped) || len(configMaps) != len(shipped) {
		t.Fatalf("the chart installs %d fragments and %d ConfigMaps by default, templates/ has %d", len(fragments), len(configMaps), len(shipped))
	}
	for name, want := range shipped {
		fragment, cm := fragments[name], configMaps[name]
		if fragment == nil || cm == nil {
			t.Fatalf("the chart does not install %s", name)
		}
		if cm.Namespace != "kubernaut-system" || cm.Name != "kx-kubernaut-executor-action-"+name {
			t.Errorf("%s: ConfigMap %s/%s, want kubernaut-system/kx-kubernaut-executor-action-%s", name, cm.Namespace, cm.Name, name)
		}
		if cm.Labels[v1alpha1.LabelInstance] != "kx" || cm.Labels[v1alpha1.LabelPartOf] != v1alpha1.PartOfValue {
			t.Errorf("%s: ConfigMap labels %v lack the chart's", name, cm.Labels)
		}
		raw := &v1alpha1.ActionTemplate{}
		if err := yaml.UnmarshalStrict([]byte(cm.Data[v1alpha1.PredefinedTemplateKey]), raw); err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(raw, want) {
			t.Errorf("%s: the chart's template differs from templates/%s.yaml", name, name)
		}
		// What the manager makes of it: the same template, marked as created from the ConfigMap.
		got, err := controllers.PredefinedTemplate(cm)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.Name != name || !equality.Semantic.DeepEqual(got.Spec, want.Spec) ||
			got.Labels[v1alpha1.LabelPredefinedAction] != name ||
			got.Annotations[v1alpha1.AnnotationPredefinedSource] != "kubernaut-system/kx-kubernaut-executor-action-"+name {
			t.Errorf("%s: the manager would install %+v", name, got.ObjectMeta)
		}
		if len(fragment.Annotations) != 0 {
			t.Errorf("%s: the ceiling fragment carries annotations %v", name, fragment.Annotations)
		}
		if !equality.Semantic.DeepEqual(fragment.Rules, want.Spec.RBAC.Rules) {
			t.Errorf("%s: ceiling fragment rules %v differ from the template's %v", name, fragment.Rules, want.Spec.RBAC.Rules)
		}
	}
}

// TestActionsComeFromTemplates checks that the chart's list of actions is templates/ alone: the
// default values name no action, every template is installed unless turned off, turning one off
// removes exactly its ConfigMap, fragment and the hook's right to delete the ConfigMap, and every
// template's file is named after it (the chart names each action by its file).
func TestActionsComeFromTemplates(t *testing.T) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	if actions, _ := ch.Values["actions"].(map[string]any); len(actions) != 0 {
		t.Errorf("values.yaml lists actions %v: the templates in templates/ are the list", actions)
	}
	shipped := shippedTemplates(t)
	for file, tpl := range shippedFiles(t) {
		if file != tpl.Name {
			t.Errorf("templates/%s.yaml holds the ActionTemplate %q", file, tpl.Name)
		}
	}
	for name := range shipped {
		objs, err := render(t, "", map[string]any{"actions": map[string]any{name: false}})
		if err != nil {
			t.Fatal(err)
		}
		fragments, configMaps := predefinedFragments(t, objs), predefinedConfigMaps(t, objs)
		if fragments[name] != nil || configMaps[name] != nil || len(fragments) != len(shipped)-1 || len(configMaps) != len(shipped)-1 {
			t.Errorf("%s: false: %d fragments, %d ConfigMaps, want every other action's", name, len(fragments), len(configMaps))
		}
		role := convert[rbacv1.Role](t, find(t, objs, "Role", "kx-kubernaut-executor-manager"))
		for _, r := range role.Rules {
			if contains(r.ResourceNames, "kx-kubernaut-executor-action-"+name) {
				t.Errorf("%s: false: the hook may still delete its ConfigMap", name)
			}
		}
	}
}

// shippedFiles returns the templates in templates/ by file name, without .yaml.
func shippedFiles(t *testing.T) map[string]*v1alpha1.ActionTemplate {
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
		out[strings.TrimSuffix(filepath.Base(f), ".yaml")] = tpl
	}
	return out
}

// generatedManagerRules returns the rules of the manager's ClusterRole and of its Role, as
// controller-gen writes them into config/rbac/role.yaml.
func generatedManagerRules(t *testing.T) (cluster, namespaced []rbacv1.PolicyRule) {
	raw, err := os.ReadFile(filepath.Join(e2eutil.RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range decode(t, string(raw)) {
		switch u.GetKind() {
		case "ClusterRole":
			cluster = convert[rbacv1.ClusterRole](t, u).Rules
		case "Role":
			if u.GetNamespace() != "kubernaut-system" {
				t.Errorf("generated Role in namespace %q", u.GetNamespace())
			}
			namespaced = convert[rbacv1.Role](t, u).Rules
		}
	}
	if cluster == nil || namespaced == nil {
		t.Fatal("config/rbac/role.yaml lacks the manager's ClusterRole or Role")
	}
	return cluster, namespaced
}

// find returns the object of that kind and name.
func find(t *testing.T, objs map[string][]*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, u := range objs[kind] {
		if u.GetName() == name {
			return u
		}
	}
	t.Fatalf("no %s %s", kind, name)
	return nil
}

// TestManagerRBAC checks the manager's roles: the generated ClusterRole, which reads no
// ConfigMap, and a Role in the release's namespace with the generated Role's rules (reading the
// predefined actions' ConfigMaps there) and, for the pre-delete hook, deleting exactly the
// release's action ConfigMaps; and that the manager and the hook are told their namespace.
func TestManagerRBAC(t *testing.T) {
	wantCluster, wantRole := generatedManagerRules(t)
	objs := mustRender(t, "default-values.yaml")

	cr := convert[rbacv1.ClusterRole](t, find(t, objs, "ClusterRole", "kx-kubernaut-executor-manager"))
	if !equality.Semantic.DeepEqual(cr.Rules, wantCluster) {
		t.Errorf("the manager's ClusterRole differs from config/rbac/role.yaml: %v", cr.Rules)
	}
	for _, u := range objs["ClusterRole"] {
		for _, r := range convert[rbacv1.ClusterRole](t, u).Rules {
			if contains(r.Resources, "configmaps") {
				t.Errorf("ClusterRole %s grants %v on ConfigMaps cluster-wide", u.GetName(), r.Verbs)
			}
			// The target clusters' credentials are read in the release's namespace only.
			if contains(r.Resources, "secrets") {
				t.Errorf("ClusterRole %s grants %v on Secrets cluster-wide", u.GetName(), r.Verbs)
			}
		}
	}

	role := convert[rbacv1.Role](t, find(t, objs, "Role", "kx-kubernaut-executor-manager"))
	if role.Namespace != "kubernaut-system" {
		t.Errorf("the manager's Role is in %q", role.Namespace)
	}
	var names []string
	for name := range shippedTemplates(t) {
		names = append(names, "kx-kubernaut-executor-action-"+name)
	}
	sort.Strings(names)
	want := append(append([]rbacv1.PolicyRule{}, wantRole...), rbacv1.PolicyRule{
		APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: names, Verbs: []string{"delete"},
	})
	if !equality.Semantic.DeepEqual(role.Rules, want) {
		t.Errorf("the manager's Role rules\n%v\nwant\n%v", role.Rules, want)
	}
	binding := convert[rbacv1.RoleBinding](t, find(t, objs, "RoleBinding", "kx-kubernaut-executor-manager"))
	if binding.Namespace != "kubernaut-system" || binding.RoleRef.Kind != "Role" || binding.RoleRef.Name != role.Name ||
		len(binding.Subjects) != 1 || binding.Subjects[0].Name != "kx-kubernaut-executor" || binding.Subjects[0].Namespace != "kubernaut-system" {
		t.Errorf("RoleBinding %+v", binding)
	}

	d := convert[appsv1.Deployment](t, objs["Deployment"][0])
	if !contains(d.Spec.Template.Spec.Containers[0].Args, "--namespace=kubernaut-system") {
		t.Errorf("the manager is not told its namespace: %v", d.Spec.Template.Spec.Containers[0].Args)
	}
	hook := convert[batchv1.Job](t, find(t, objs, "Job", "kx-kubernaut-executor-cleanup"))
	args := hook.Spec.Template.Spec.Containers[0].Args
	if !contains(args, "--cleanup-ceiling-fragments=kx") || !contains(args, "--namespace=kubernaut-system") {
		t.Errorf("pre-delete hook args %v", args)
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
	checkGeneratedCertificate(t, objs)
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
	if n := len(shippedTemplates(t)); len(predefinedFragments(t, objs)) != n || len(predefinedConfigMaps(t, objs)) != n {
		t.Errorf("%d predefined fragments, %d ConfigMaps", len(predefinedFragments(t, objs)), len(predefinedConfigMaps(t, objs)))
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

// checkGeneratedCertificate checks the webhook certificate the chart generates when cert-manager
// is off: one kubernetes.io/tls Secret, the one the manager mounts, with exactly tls.crt, tls.key
// and ca.crt; the key is the certificate's; the certificate is signed by ca.crt for the webhook
// Service's DNS names; the manager mounts it; and every webhook (validating and mutating) trusts ca.crt
// and nothing else.
func checkGeneratedCertificate(t *testing.T, objs map[string][]*unstructured.Unstructured) {
	t.Helper()
	const service = "kx-kubernaut-executor-webhook"
	secret := convert[corev1.Secret](t, find(t, objs, "Secret", "kx-kubernaut-executor-webhook-tls"))
	if len(objs["Secret"]) != 1 || secret.Namespace != "kubernaut-system" || secret.Type != corev1.SecretTypeTLS {
		t.Fatalf("%d Secrets; the webhook's is %s/%s of type %q", len(objs["Secret"]), secret.Namespace, secret.Name, secret.Type)
	}
	keys := make([]string, 0, len(secret.Data))
	for k := range secret.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != "ca.crt,tls.crt,tls.key" {
		t.Fatalf("the webhook Secret holds %v, want ca.crt, tls.crt and tls.key", keys)
	}
	pair, err := tls.X509KeyPair(secret.Data["tls.crt"], secret.Data["tls.key"])
	if err != nil {
		t.Fatalf("tls.key is not the key of tls.crt: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(secret.Data["ca.crt"]) {
		t.Fatal("ca.crt holds no PEM certificate")
	}
	for _, name := range []string{service + ".kubernaut-system.svc", service + ".kubernaut-system.svc.cluster.local"} {
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("tls.crt is not a serving certificate for %s signed by ca.crt: %v", name, err)
		}
	}
	// The Deployment mounts that Secret where the manager reads its certificate.
	d := convert[appsv1.Deployment](t, objs["Deployment"][0])
	mounted := false
	for _, v := range d.Spec.Template.Spec.Volumes {
		mounted = mounted || (v.Name == "webhook-certs" && v.Secret != nil && v.Secret.SecretName == secret.Name)
	}
	if !mounted {
		t.Errorf("the manager does not mount %s", secret.Name)
	}
	for _, kind := range []string{"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} {
		for _, cfg := range objs[kind] {
			for _, h := range cfg.Object["webhooks"].([]any) {
				w := h.(map[string]any)
				bundle, _ := w["clientConfig"].(map[string]any)["caBundle"].(string)
				if pem, err := base64.StdEncoding.DecodeString(bundle); err != nil || !bytes.Equal(pem, secret.Data["ca.crt"]) {
					t.Errorf("%s webhook %v: caBundle is not the Secret's ca.crt (%v)", kind, w["name"], err)
				}
			}
		}
	}
}

func TestEveryActionOff(t *testing.T) {
	objs := mustRender(t, "no-actions-values.yaml")
	if n, m := len(predefinedFragments(t, objs)), len(predefinedConfigMaps(t, objs)); n != 0 || m != 0 {
		t.Fatalf("%d predefined fragments and %d ConfigMaps with every action off: ci/no-actions-values.yaml must turn off every template in templates/", n, m)
	}
	// No action, no ConfigMap to delete: the hook's rule must not be left without names, which
	// would grant deleting every ConfigMap of the namespace.
	_, wantRole := generatedManagerRules(t)
	role := convert[rbacv1.Role](t, find(t, objs, "Role", "kx-kubernaut-executor-manager"))
	if !equality.Semantic.DeepEqual(role.Rules, wantRole) {
		t.Errorf("the manager's Role with every action off: %v", role.Rules)
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
		if role.Labels[v1alpha1.LabelAggregateToCeiling] != "true" || len(role.Rules) != 1 || role.Rules[0].Resources[0] != "statefulsets/scale" {
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

// TestAudit checks the audit values: ci/audit-values.yaml renders every audit flag, the CA
// bundle's ConfigMap (and a checksum that restarts the manager when it changes) and read-only
// mounts of the CA, the token Secret's key and the client certificate; the default values
// render no audit flag and no audit volume.
func TestAudit(t *testing.T) {
	objs := mustRender(t, "audit-values.yaml")
	d := convert[appsv1.Deployment](t, objs["Deployment"][0])
	pod := d.Spec.Template.Spec
	want := []string{
		"--audit-url=https://audit.example.internal:8443",
		"--audit-format=cloudevents",
		"--audit-concurrency=8",
		"--audit-deadline=24h",
		"--audit-ca-file=/etc/kubernaut/audit/ca/ca.crt",
		"--audit-token-file=/etc/kubernaut/audit/token/token",
		"--audit-cert-file=/etc/kubernaut/audit/client/tls.crt",
		"--audit-key-file=/etc/kubernaut/audit/client/tls.key",
	}
	if got := auditArgs(pod.Containers[0].Args); !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("audit flags\n%v\nwant\n%v", got, want)
	}

	cm := convert[corev1.ConfigMap](t, find(t, objs, "ConfigMap", "kx-kubernaut-executor-audit-ca"))
	if cm.Namespace != "kubernaut-system" || !strings.HasPrefix(cm.Data["ca.crt"], "-----BEGIN CERTIFICATE-----\n") {
		t.Errorf("audit CA ConfigMap %s/%s: %q", cm.Namespace, cm.Name, cm.Data["ca.crt"])
	}
	if d.Spec.Template.Annotations["checksum/audit-ca"] == "" {
		t.Error("no checksum of the audit CA bundle on the manager's pods: a new bundle would not restart it")
	}

	mounts := map[string]corev1.VolumeMount{}
	for _, m := range pod.Containers[0].VolumeMounts {
		mounts[m.Name] = m
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	for name, dir := range map[string]string{"audit-ca": "ca", "audit-token": "token", "audit-client-cert": "client"} {
		path := "/etc/kubernaut/audit/" + dir
		if m, ok := mounts[name]; !ok || m.MountPath != path || !m.ReadOnly || m.SubPath != "" {
			t.Errorf("volume mount %s: %+v, want read-only at %s without subPath (which would never see a rotation)", name, m, path)
		}
	}
	if v := volumes["audit-ca"]; v.ConfigMap == nil || v.ConfigMap.Name != cm.Name {
		t.Errorf("volume audit-ca: %+v", v.VolumeSource)
	}
	if v := volumes["audit-token"]; v.Secret == nil || v.Secret.SecretName != "audit-token" ||
		!equality.Semantic.DeepEqual(v.Secret.Items, []corev1.KeyToPath{{Key: "token", Path: "token"}}) {
		t.Errorf("volume audit-token: %+v", v.VolumeSource)
	}
	if v := volumes["audit-client-cert"]; v.Secret == nil || v.Secret.SecretName != "audit-client-tls" ||
		!equality.Semantic.DeepEqual(v.Secret.Items, []corev1.KeyToPath{{Key: "tls.crt", Path: "tls.crt"}, {Key: "tls.key", Path: "tls.key"}}) {
		t.Errorf("volume audit-client-cert: %+v", v.VolumeSource)
	}

	// A plain HTTP URL alone: the URL, the format and the concurrency, nothing else.
	objs, err := render(t, "", map[string]any{"audit": map[string]any{"url": "http://10.250.1.1:8090"}})
	if err != nil {
		t.Fatal(err)
	}
	d = convert[appsv1.Deployment](t, objs["Deployment"][0])
	want = []string{"--audit-url=http://10.250.1.1:8090", "--audit-format=kubernaut", "--audit-concurrency=4"}
	if got := auditArgs(d.Spec.Template.Spec.Containers[0].Args); !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("audit flags with a plain URL: %v, want %v", got, want)
	}
	if len(d.Spec.Template.Spec.Volumes) != 1 || len(objs["ConfigMap"]) != len(predefinedConfigMaps(t, objs)) {
		t.Errorf("audit volumes or ConfigMap without credentials: %v", d.Spec.Template.Spec.Volumes)
	}

	// The defaults: no storage service, so no flag, volume or ConfigMap at all.
	objs = mustRender(t, "default-values.yaml")
	d = convert[appsv1.Deployment](t, objs["Deployment"][0])
	if got := auditArgs(d.Spec.Template.Spec.Containers[0].Args); len(got) != 0 {
		t.Errorf("the default values render audit flags %v", got)
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if strings.HasPrefix(v.Name, "audit") {
			t.Errorf("the default values render the volume %s", v.Name)
		}
	}
	if _, ok := d.Spec.Template.Annotations["checksum/audit-ca"]; ok {
		t.Error("the default values render an audit CA checksum")
	}
}

// auditArgs returns the manager's --audit-* flags, in order.
func auditArgs(args []string) []string {
	var out []string
	for _, a := range args {
		if strings.HasPrefix(a, "--audit-") {
			out = append(out, a)
		}
	}
	return out
}

// TestAuditValuesFail checks that audit values the manager would refuse, or that contradict each
// other, fail the install with a message naming the values.
func TestAuditValuesFail(t *testing.T) {
	const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	tests := []struct {
		name  string
		audit map[string]any
		want  string
	}{
		{"token over plain HTTP", map[string]any{"url": "http://audit:8090", "tokenSecret": "audit-token"},
			`audit.url "http://audit:8090" is plain HTTP, and the manager sends no credentials over plain HTTP: use an https:// URL, or leave out audit.tokenSecret`},
		{"CA bundle over plain HTTP", map[string]any{"url": "http://audit:8090", "caBundle": pem},
			"is plain HTTP, and the manager sends no credentials over plain HTTP: use an https:// URL, or leave out audit.caBundle"},
		{"client certificate over plain HTTP", map[string]any{"url": "http://audit:8090", "clientCertSecret": "audit-tls"},
			"leave out audit.clientCertSecret"},
		{"credentials without a URL", map[string]any{"tokenSecret": "audit-token", "clientCertSecret": "audit-tls"},
			"audit.tokenSecret, audit.clientCertSecret: only used with audit.url, which is empty"},
		{"CA bundle without a certificate", map[string]any{"url": "https://audit:8443", "caBundle": "not a certificate"},
			"audit.caBundle holds no PEM certificate"},
		{"URL with a user", map[string]any{"url": "https://user@audit:8443"}, "at '/audit/url'"},
		{"URL with a query", map[string]any{"url": "https://audit:8443/?token=x"}, "at '/audit/url'"},
		{"URL without a scheme", map[string]any{"url": "audit:8443"}, "at '/audit/url'"},
		{"unknown format", map[string]any{"url": "https://audit:8443", "format": "xml"}, "at '/audit/format'"},
		{"bad deadline", map[string]any{"url": "https://audit:8443", "deadline": "1 day"}, "at '/audit/deadline'"},
		{"no concurrency", map[string]any{"url": "https://audit:8443", "concurrency": 0}, "at '/audit/concurrency'"},
		{"misspelt value", map[string]any{"url": "https://audit:8443", "tokenSecrets": "x"}, "additional properties 'tokenSecrets' not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := render(t, "", map[string]any{"audit": tt.audit})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
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
		{"unknown action", map[string]any{"actions": map[string]any{"reboot-cluster": false}},
			"actions.reboot-cluster: no predefined action has that name (there are: collect-logs, "},
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

// TestRequesterRecordAndStatusPolicies checks what keeps an execution's requester and status
// honest: the mutating webhooks that record the requester (on create, kept on update) with the
// release's failure policy, and each approver's decision on the status subresource, which fails
// closed whatever the release's failure policy and leaves out this release's manager; and the
// two admission policies the API server enforces itself, bound with Deny, the status policy
// naming this release's manager.
func TestRequesterRecordAndStatusPolicies(t *testing.T) {
	manager := "system:serviceaccount:kubernaut-system:kx-kubernaut-executor"
	for _, failurePolicy := range []string{"Fail", "Ignore"} {
		objs, err := render(t, "default-values.yaml", map[string]any{"webhook": map[string]any{"failurePolicy": failurePolicy}})
		if err != nil {
			t.Fatal(err)
		}
		mutating := objs["MutatingWebhookConfiguration"]
		if len(mutating) != 1 {
			t.Fatalf("%d mutating webhook configurations", len(mutating))
		}
		hooks := map[string]map[string]any{}
		for _, h := range mutating[0].Object["webhooks"].([]any) {
			w := h.(map[string]any)
			hooks[fmt.Sprint(w["name"])] = w
		}
		if len(hooks) != 2 {
			t.Fatalf("mutating webhooks %v", hooks)
		}
		record := hooks["mkubernetesexecution.kubernaut.io"]
		rule := record["rules"].([]any)[0].(map[string]any)
		if fmt.Sprint(rule["resources"]) != "[kubernetesexecutions]" || fmt.Sprint(rule["operations"]) != "[CREATE UPDATE]" || record["failurePolicy"] != failurePolicy {
			t.Errorf("requester record webhook with webhook.failurePolicy %s: failurePolicy %v, rule %v", failurePolicy, record["failurePolicy"], rule)
		}
		approval := hooks["mkubernetesexecution-approval.kubernaut.io"]
		rule = approval["rules"].([]any)[0].(map[string]any)
		if fmt.Sprint(rule["resources"]) != "[kubernetesexecutions/status]" || fmt.Sprint(rule["operations"]) != "[UPDATE]" || approval["failurePolicy"] != "Fail" {
			t.Errorf("approval webhook with webhook.failurePolicy %s: failurePolicy %v, rule %v", failurePolicy, approval["failurePolicy"], rule)
		}
		if c := fmt.Sprint(approval["matchConditions"]); !strings.Contains(c, "request.userInfo.username != '"+manager+"'") {
			t.Errorf("the approval webhook does not leave out the release's manager %s: %v", manager, c)
		}
	}
	objs := mustRender(t, "default-values.yaml")
	status := find(t, objs, "ValidatingAdmissionPolicy", "kubernaut-executor-status-writer")
	spec := fmt.Sprint(status.Object["spec"])
	if !strings.Contains(spec, "request.userInfo.username != '"+manager+"'") || !strings.Contains(spec, "only the executor ("+manager+")") {
		t.Errorf("the status policy does not name the release's manager %s: %v", manager, spec)
	}
	if strings.Contains(spec, "kubernaut-system:kubernaut-executor'") {
		t.Errorf("the status policy still names the manager of config/: %v", spec)
	}
	find(t, objs, "ValidatingAdmissionPolicy", "kubernaut-executor-requester")
	for _, name := range []string{"kubernaut-executor-status-writer", "kubernaut-executor-requester"} {
		b := find(t, objs, "ValidatingAdmissionPolicyBinding", name)
		spec := b.Object["spec"].(map[string]any)
		if spec["policyName"] != name || fmt.Sprint(spec["validationActions"]) != "[Deny]" {
			t.Errorf("binding %s: %v", name, spec)
		}
	}
}

// TestClusterSecrets checks clusters.secrets: the manager is told to register the Secrets, and its
// Role lets it read and patch those Secrets by name, and no other.
func TestClusterSecrets(t *testing.T) {
	objs, err := render(t, "", map[string]any{"clusters": map[string]any{"secrets": []any{
		map[string]any{"secret": "east-kubeconfig", "name": "east"}, map[string]any{"secret": "west"}, //nolint:gosec // G101: Secret names, not credentials.
	}}})
	if err != nil {
		t.Fatal(err)
	}
	d := convert[appsv1.Deployment](t, objs["Deployment"][0])
	if args := d.Spec.Template.Spec.Containers[0].Args; !contains(args, "--cluster-secrets=east-kubeconfig=east,west") {
		t.Errorf("the manager is not told the Secrets: %v", args)
	}
	role := convert[rbacv1.Role](t, find(t, objs, "Role", "kx-kubernaut-executor-manager"))
	var named []rbacv1.PolicyRule
	for _, r := range role.Rules {
		if contains(r.Resources, "secrets") && len(r.ResourceNames) > 0 {
			named = append(named, r)
		}
	}
	want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"east-kubeconfig", "west"}, Verbs: []string{"get", "patch"}}}
	if !equality.Semantic.DeepEqual(named, want) {
		t.Errorf("rules on named Secrets %v, want %v", named, want)
	}
	// Without the value, no Secret may be patched.
	for _, r := range convert[rbacv1.Role](t, find(t, mustRender(t, "default-values.yaml"), "Role", "kx-kubernaut-executor-manager")).Rules {
		if contains(r.Resources, "secrets") && contains(r.Verbs, "patch") {
			t.Errorf("the default Role patches Secrets: %v", r)
		}
	}
	if _, err := render(t, "", map[string]any{"clusters": map[string]any{"secrets": []any{map[string]any{"secret": "x", "name": "Not_A_Label"}}}}); err == nil {
		t.Error("a cluster name that is not a DNS label was accepted")
	}
}
