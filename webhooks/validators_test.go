package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
)

// reviewer answers SubjectAccessReviews from a fixed set of allowed permissions, recording what
// it was asked. A key "verb resource/subresource" allows the permission everywhere; a key
// "verb resource/subresource in ns" only in that namespace (never cluster-wide).
type reviewer struct {
	allowed map[string]bool
	// users, when it holds the reviewed user, answers for that user instead of allowed.
	users map[string]map[string]bool
	asked []string
}

func (r *reviewer) Create(_ context.Context, obj client.Object, _ ...client.CreateOption) error {
	sar := obj.(*authorizationv1.SubjectAccessReview)
	a := sar.Spec.ResourceAttributes
	key := a.Verb + " " + a.Resource
	if a.Subresource != "" {
		key += "/" + a.Subresource
	}
	r.asked = append(r.asked, fmt.Sprintf("%s %s as %s in %s named %s", key, a.Group, sar.Spec.User, a.Namespace, a.Name))
	allowed := r.allowed
	if u, ok := r.users[sar.Spec.User]; ok {
		allowed = u
	}
	sar.Status.Allowed = allowed[key] || (a.Namespace != "" && allowed[key+" in "+a.Namespace])
	return nil
}

func testScheme(t testing.TB) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func testMapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper([]schema.GroupVersion{{Group: "apps", Version: "v1"}, {Version: "v1"}})
	m.Add(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Node"}, meta.RESTScopeRoot)
	return m
}

func readyTemplate(name string, schemaJSON string) *v1alpha1.ActionTemplate {
	tpl := &v1alpha1.ActionTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Generation: 1},
		Spec: v1alpha1.ActionTemplateSpec{
			Image: "kubernaut-actions", TargetKinds: []string{"Deployment"},
			MaxTimeout: &metav1.Duration{Duration: 600e9},
			RBAC: v1alpha1.ActionRBAC{Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"apps"}, Resources: []string{"deployments", "deployments/scale"}, Verbs: []string{"get", "patch"}},
			}},
			Parameters: &apiextensionsv1.JSON{Raw: []byte(schemaJSON)},
		},
	}
	tpl.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "RulesMaterialized", ObservedGeneration: 1}}
	return tpl
}

// drainTemplate is drain-node's shape: cluster scope, the node and two auxiliary rules.
func drainTemplate() *v1alpha1.ActionTemplate {
	tpl := readyTemplate("drain", `{"type":"object"}`)
	tpl.Spec.TargetKinds = []string{"Node", "Widget"}
	tpl.Spec.RBAC = v1alpha1.ActionRBAC{Scope: v1alpha1.RBACScopeCluster, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
		{APIGroups: []string{""}, Resources: []string{"pods/eviction"}, Verbs: []string{"create"}},
	}}
	return tpl
}

const scaleSchema = `{"type":"object","additionalProperties":false,"required":["replicas"],
	"properties":{"replicas":{"type":"integer","minimum":0,"maximum":50}}}`

func execution(params string, mutate ...func(*v1alpha1.KubernetesExecution)) *v1alpha1.KubernetesExecution {
	obj := &v1alpha1.KubernetesExecution{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: "fix"},
		Spec: v1alpha1.KubernetesExecutionSpec{Action: v1alpha1.ActionSpec{
			Type: "scale", Parameters: &apiextensionsv1.JSON{Raw: []byte(params)},
			Target: v1alpha1.TargetSpec{Namespace: "prod", ResourceKind: "Deployment", ResourceName: "web"},
		}},
	}
	admitted(obj, "alice")
	for _, m := range mutate {
		m(obj)
	}
	return obj
}

// admitted records what the defaulting webhook records for user (see requestContext) and the
// execution's template as readyTemplate builds it.
func admitted(obj *v1alpha1.KubernetesExecution, user string) {
	obj.Spec.Admission = &v1alpha1.AdmissionRecord{
		Requester:   v1alpha1.UserInfo{Username: user, Groups: []string{"team"}},
		TemplateUID: types.UID("uid-" + obj.Spec.Action.Type), TemplateGeneration: 1,
	}
}

// onBehalfOfBob is an execution alice creates for bob (groups oncall and sre), recorded as the
// defaulting webhook records it.
func onBehalfOfBob(o *v1alpha1.KubernetesExecution) {
	o.Annotations = map[string]string{v1alpha1.AnnotationOnBehalfOf: "bob", v1alpha1.AnnotationOnBehalfOfGroups: "oncall, sre,"}
	o.Spec.Admission.Requester = v1alpha1.UserInfo{Username: "bob", Groups: []string{"oncall", "sre"}}
	o.Spec.Admission.CreatedBy = &v1alpha1.UserInfo{Username: "alice", Groups: []string{"team"}}
}

// onNode targets node n1 with the drain template.
func onNode(o *v1alpha1.KubernetesExecution) {
	o.Spec.Action.Type = "drain"
	o.Spec.Action.Parameters = nil
	o.Spec.Action.Target = v1alpha1.TargetSpec{ResourceKind: "Node", ResourceName: "n1"}
	admitted(o, "alice")
}

// causes returns "field: type" for each cause of an Invalid error, sorted.
func causes(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) || status.Status().Reason != metav1.StatusReasonInvalid {
		t.Fatalf("not an Invalid error: %v", err)
	}
	var out []string
	for _, c := range status.Status().Details.Causes {
		out = append(out, c.Field+": "+string(c.Type))
	}
	sort.Strings(out)
	return out
}

func requestContext(user string) context.Context {
	return admission.NewContextWithRequest(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UserInfo: authenticationv1.UserInfo{Username: user, Groups: []string{"team"}},
	}})
}

func TestKubernetesExecutionValidator(t *testing.T) {
	notReady := readyTemplate("stale", scaleSchema)
	notReady.Status.Conditions[0].Status = metav1.ConditionFalse
	system := readyTemplate("scale-system", scaleSchema)
	system.Spec.AllowProtectedNamespaces = true
	reader := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(readyTemplate("scale", scaleSchema), notReady, drainTemplate(), system).Build()
	allPerms := map[string]bool{"get deployments": true, "patch deployments": true, "get deployments/scale": true, "patch deployments/scale": true}
	nodeAdmin := map[string]bool{"get nodes": true, "patch nodes": true, "list pods": true, "create pods/eviction": true}
	impersonator := map[string]bool{"impersonate users": true, "impersonate groups": true}
	inKubeSystem := func(o *v1alpha1.KubernetesExecution) { o.Spec.Action.Target.Namespace = "kube-system" }

	tests := []struct {
		name    string
		obj     *v1alpha1.KubernetesExecution
		allowed map[string]bool
		users   map[string]map[string]bool
		want    []string
	}{
		{name: "valid", obj: execution(`{"replicas":3}`), allowed: allPerms},
		{name: "unknown action", obj: execution(`{}`, func(o *v1alpha1.KubernetesExecution) { o.Spec.Action.Type = "nope" }),
			want: []string{"spec.action.type: FieldValueNotFound"}},
		{name: "template not ready", obj: execution(`{"replicas":3}`, func(o *v1alpha1.KubernetesExecution) { o.Spec.Action.Type = "stale"; admitted(o, "alice") }),
			allowed: allPerms, want: []string{"spec.action.type: FieldValueInvalid"}},
		{name: "schema errors all at once", obj: execution(`{"replicas":-1,"extra":1}`), allowed: allPerms,
			want: []string{"spec.action.parameters.extra: FieldValueForbidden", "spec.action.parameters.replicas: FieldValueInvalid"}},
		{name: "wrong kind and missing namespace", obj: execution(`{"replicas":1}`, func(o *v1alpha1.KubernetesExecution) {
			o.Spec.Action.Target.ResourceKind, o.Spec.Action.Target.Namespace = "Pod", ""
		}), allowed: allPerms, want: []string{"spec.action.target.namespace: FieldValueRequired", "spec.action.target.resourceKind: FieldValueNotSupported"}},
		{name: "timeout above maximum", obj: execution(`{"replicas":1}`, func(o *v1alpha1.KubernetesExecution) {
			o.Spec.Timeout = &metav1.Duration{Duration: 3600e9}
		}), allowed: allPerms, want: []string{"spec.timeout: FieldValueInvalid"}},
		{name: "requester lacks patch", obj: execution(`{"replicas":1}`),
			allowed: map[string]bool{"get deployments": true, "get deployments/scale": true},
			want:    []string{"spec.action.target: FieldValueForbidden"}},
		{name: "node action as a node admin", obj: execution(``, onNode), allowed: nodeAdmin},
		{name: "namespace admin asks for a node action, naming their namespace", obj: execution(``, onNode, func(o *v1alpha1.KubernetesExecution) {
			o.Spec.Action.Target.Namespace = "prod"
		}), allowed: map[string]bool{"get nodes in prod": true, "patch nodes in prod": true, "list pods in prod": true, "create pods/eviction in prod": true},
			want: []string{"spec.action.target.namespace: FieldValueInvalid"}},
		{name: "namespace admin asks for a node action", obj: execution(``, onNode),
			allowed: map[string]bool{"get nodes in prod": true, "patch nodes in prod": true, "list pods in prod": true, "create pods/eviction in prod": true},
			want:    []string{"spec.action.target: FieldValueForbidden"}},
		{name: "node patcher who may not list or evict pods", obj: execution(``, onNode),
			allowed: map[string]bool{"get nodes": true, "patch nodes": true},
			want:    []string{"spec.action.target: FieldValueForbidden"}},
		{name: "a kind the API server does not serve", obj: execution(``, onNode, func(o *v1alpha1.KubernetesExecution) {
			o.Spec.Action.Target.ResourceKind = "Widget"
		}), allowed: nodeAdmin, want: []string{"spec.action.target.resourceKind: FieldValueInvalid"}},
		{name: "no admission record", obj: execution(`{"replicas":1}`, func(o *v1alpha1.KubernetesExecution) { o.Spec.Admission = nil }),
			allowed: allPerms, want: []string{"spec.admission: FieldValueRequired"}},
		{name: "admission record of another user", obj: execution(`{"replicas":1}`, func(o *v1alpha1.KubernetesExecution) { admitted(o, "root") }),
			allowed: allPerms, want: []string{"spec.admission.requester: FieldValueForbidden"}},
		{name: "template changed during admission", obj: execution(`{"replicas":1}`, func(o *v1alpha1.KubernetesExecution) { o.Spec.Admission.TemplateGeneration = 2 }),
			allowed: allPerms, want: []string{"spec.admission.templateGeneration: FieldValueInvalid"}},
		{name: "a protected namespace", obj: execution(`{"replicas":1}`, inKubeSystem),
			allowed: allPerms, want: []string{"spec.action.target.namespace: FieldValueForbidden"}},
		{name: "a protected namespace, on a template that allows it", obj: execution(`{"replicas":1}`, inKubeSystem, func(o *v1alpha1.KubernetesExecution) {
			o.Spec.Action.Type = "scale-system"
			admitted(o, "alice")
		}), allowed: allPerms},
		{name: "on behalf of a user who holds the grant, by a creator who may impersonate them", obj: execution(`{"replicas":1}`, onBehalfOfBob),
			users: map[string]map[string]bool{"alice": impersonator, "bob": allPerms}},
		{name: "on behalf of a user who lacks the grant, by a creator who holds it", obj: execution(`{"replicas":1}`, onBehalfOfBob),
			users: map[string]map[string]bool{"alice": merge(impersonator, allPerms), "bob": {"get deployments": true}},
			want:  []string{"spec.action.target: FieldValueForbidden"}},
		{name: "on behalf of a user the creator may not impersonate", obj: execution(`{"replicas":1}`, onBehalfOfBob),
			users: map[string]map[string]bool{"alice": merge(allPerms, map[string]bool{"impersonate users": true}), "bob": allPerms},
			want:  []string{"metadata.annotations[kubernaut.io/on-behalf-of]: FieldValueForbidden"}},
		{name: "on behalf of a user, recorded as the creator's own", obj: execution(`{"replicas":1}`, func(o *v1alpha1.KubernetesExecution) {
			onBehalfOfBob(o)
			admitted(o, "alice")
		}), users: map[string]map[string]bool{"alice": merge(impersonator, allPerms)}, want: []string{"spec.admission.createdBy: FieldValueForbidden"}},
		{name: "on behalf of a user, with other groups recorded", obj: execution(`{"replicas":1}`, onBehalfOfBob, func(o *v1alpha1.KubernetesExecution) {
			o.Spec.Admission.Requester.Groups = []string{"system:masters"}
		}), users: map[string]map[string]bool{"alice": impersonator, "bob": allPerms}, want: []string{"spec.admission.requester: FieldValueForbidden"}},
		{name: "a creator recorded without the annotation", obj: execution(`{"replicas":1}`, onBehalfOfBob, func(o *v1alpha1.KubernetesExecution) {
			o.Annotations = nil
			o.Spec.Admission.Requester = v1alpha1.UserInfo{Username: "alice", Groups: []string{"team"}}
		}), allowed: merge(impersonator, allPerms), want: []string{"spec.admission.createdBy: FieldValueForbidden"}},
		{name: "more groups than the requester policy can check", obj: execution(`{"replicas":1}`, onBehalfOfBob, func(o *v1alpha1.KubernetesExecution) {
			o.Annotations[v1alpha1.AnnotationOnBehalfOfGroups] = strings.Repeat("g,", 17)
		}), allowed: merge(impersonator, allPerms), want: []string{"metadata.annotations[kubernaut.io/on-behalf-of-groups]: FieldValueTooMany"}},
		{name: "groups without a user", obj: execution(`{"replicas":1}`, func(o *v1alpha1.KubernetesExecution) {
			o.Annotations = map[string]string{v1alpha1.AnnotationOnBehalfOfGroups: "system:masters"}
		}), allowed: merge(impersonator, allPerms), want: []string{"metadata.annotations[kubernaut.io/on-behalf-of-groups]: FieldValueForbidden"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rev := &reviewer{allowed: tt.allowed, users: tt.users}
			v := &KubernetesExecutionValidator{Reader: reader, Mapper: testMapper(), Reviewer: rev,
				Validator: &validation.Validator{ProtectedNamespaces: []string{"kube-system", "kubernaut-system"}}}
			_, err := v.ValidateCreate(requestContext("alice"), tt.obj)
			if got := causes(t, err); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("causes %v, want %v (%v)", got, tt.want, err)
			}
		})
	}

	// The messages name the protected namespace and the opt-in, and what the creator may not
	// impersonate; the named user's rights are asked for the named user.
	v := &KubernetesExecutionValidator{Reader: reader, Mapper: testMapper(), Reviewer: &reviewer{allowed: allPerms},
		Validator: &validation.Validator{ProtectedNamespaces: []string{"kube-system"}}}
	_, err := v.ValidateCreate(requestContext("alice"), execution(`{"replicas":1}`, inKubeSystem))
	if err == nil || !strings.Contains(err.Error(), `spec.action.target.namespace: Forbidden: namespace kube-system is protected (the executor's --protected-namespaces); the action's template does not allow protected namespaces (spec.allowProtectedNamespaces)`) {
		t.Fatalf("protected namespace: %v", err)
	}
	rev := &reviewer{users: map[string]map[string]bool{"alice": {"impersonate users": true}, "bob": allPerms}}
	v = &KubernetesExecutionValidator{Reader: reader, Mapper: testMapper(), Reviewer: rev, Validator: &validation.Validator{}}
	_, err = v.ValidateCreate(requestContext("alice"), execution(`{"replicas":1}`, onBehalfOfBob))
	if err == nil || !strings.Contains(err.Error(), `metadata.annotations[kubernaut.io/on-behalf-of]: Forbidden: alice may not impersonate groups "oncall" (cluster-wide), impersonate groups "sre" (cluster-wide); an execution on behalf of bob needs the right to impersonate them and each of their groups`) {
		t.Fatalf("on behalf of bob without impersonating his groups: %v", err)
	}
	impersonating := []string{"impersonate users  as alice in  named bob", "impersonate groups  as alice in  named oncall", "impersonate groups  as alice in  named sre"}
	if !reflect.DeepEqual(rev.asked, impersonating) {
		t.Fatalf("asked %q, want only %q", rev.asked, impersonating)
	}
	rev = &reviewer{users: map[string]map[string]bool{"alice": impersonator, "bob": allPerms}}
	v = &KubernetesExecutionValidator{Reader: reader, Mapper: testMapper(), Reviewer: rev, Validator: &validation.Validator{}}
	if _, err = v.ValidateCreate(requestContext("alice"), execution(`{"replicas":1}`, onBehalfOfBob)); err != nil {
		t.Fatal(err)
	}
	wantAsked := append([]string{
		"get deployments apps as bob in prod named web", "get deployments/scale apps as bob in prod named web",
		"patch deployments apps as bob in prod named web", "patch deployments/scale apps as bob in prod named web",
	}, impersonating...)
	if !reflect.DeepEqual(sortedCopy(rev.asked), sortedCopy(wantAsked)) {
		t.Fatalf("asked %q, want %q", rev.asked, wantAsked)
	}

	// A node action is checked cluster-wide, every rule of its grant, naming what is missing.
	rev = &reviewer{allowed: map[string]bool{"get nodes": true, "patch nodes": true}}
	v = &KubernetesExecutionValidator{Reader: reader, Mapper: testMapper(), Reviewer: rev, Validator: &validation.Validator{}}
	_, err = v.ValidateCreate(requestContext("alice"), execution(``, onNode))
	if err == nil || !strings.Contains(err.Error(), `alice may not create pods/eviction (cluster-wide), list pods (cluster-wide), which action "drain" would be granted on Node n1`) {
		t.Fatalf("the rejection does not name the missing auxiliary permissions: %v", err)
	}
	wantAsked = []string{
		"create pods/eviction  as alice in  named ", "get nodes  as alice in  named n1", "list pods  as alice in  named ", "patch nodes  as alice in  named n1",
	}
	if !reflect.DeepEqual(rev.asked, wantAsked) {
		t.Fatalf("asked %q, want %q", rev.asked, wantAsked)
	}

	// Every cause of a rejection is counted by its type.
	forbidden := testutil.ToFloat64(rejections.WithLabelValues("kubernetesexecutions", "FieldValueForbidden"))
	v0 := &KubernetesExecutionValidator{Reader: reader, Mapper: testMapper(), Reviewer: &reviewer{allowed: allPerms}, Validator: &validation.Validator{}}
	if _, err := v0.ValidateCreate(requestContext("alice"), execution(`{"replicas":1,"a":1,"b":2}`)); err == nil {
		t.Fatal("two unknown parameters were admitted")
	}
	if got := testutil.ToFloat64(rejections.WithLabelValues("kubernetesexecutions", "FieldValueForbidden")); got != forbidden+2 {
		t.Fatalf("kubernaut_admission_rejections_total{reason=FieldValueForbidden} went from %v to %v, want +2", forbidden, got)
	}

	// The requester check asks about exactly the target, as the requester.
	rev = &reviewer{allowed: allPerms}
	v = &KubernetesExecutionValidator{Reader: reader, Mapper: testMapper(), Reviewer: rev, Validator: &validation.Validator{}}
	if _, err := v.ValidateCreate(requestContext("alice"), execution(`{"replicas":1}`)); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"get deployments apps as alice in prod named web", "get deployments/scale apps as alice in prod named web",
		"patch deployments apps as alice in prod named web", "patch deployments/scale apps as alice in prod named web",
	}
	if !reflect.DeepEqual(rev.asked, want) {
		t.Fatalf("asked %v, want %v", rev.asked, want)
	}

	// An update may not change the spec; any other update passes.
	old := execution(`{"replicas":1}`)
	changed := execution(`{"replicas":2}`)
	if got := causes(t, func() error { _, err := v.ValidateUpdate(context.Background(), old, changed); return err }()); !reflect.DeepEqual(got, []string{"spec: FieldValueForbidden"}) {
		t.Fatalf("spec change: %v", got)
	}
	relabelled := old.DeepCopy()
	relabelled.Finalizers = []string{v1alpha1.GrantFinalizer}
	if _, err := v.ValidateUpdate(context.Background(), old, relabelled); err != nil {
		t.Fatalf("a finalizer change was refused: %v", err)
	}
}

// sortedCopy returns a sorted copy of s.
func sortedCopy(s []string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}

// merge returns the permissions of both sets.
func merge(a, b map[string]bool) map[string]bool {
	out := map[string]bool{}
	for _, m := range []map[string]bool{a, b} {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func TestActionTemplateValidator(t *testing.T) {
	ceiling := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "ceiling"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "deployments/scale"}, Verbs: []string{"get", "patch"}},
	}}
	reader := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(ceiling).Build()
	v := &ActionTemplateValidator{Reader: reader, CeilingName: "ceiling"}
	tests := []struct {
		name   string
		mutate func(*v1alpha1.ActionTemplate)
		want   []string
	}{
		{name: "valid", mutate: func(tpl *v1alpha1.ActionTemplate) {
			tpl.Spec.Args = []string{"scale", "--replicas={{ .Parameters.replicas }}", "{{ .Target.Name | upper }}"}
		}},
		{name: "schema does not compile", mutate: func(tpl *v1alpha1.ActionTemplate) {
			tpl.Spec.Parameters.Raw = []byte(`{"type":"objet"}`)
		}, want: []string{"spec.parameters: FieldValueInvalid"}},
		{name: "args parse and hermetic errors", mutate: func(tpl *v1alpha1.ActionTemplate) {
			tpl.Spec.Args = []string{"{{ .Target", `{{ env "PATH" }}`, "{{ now }}"}
		}, want: []string{"spec.args[0]: FieldValueInvalid", "spec.args[1]: FieldValueInvalid", "spec.args[2]: FieldValueInvalid"}},
		{name: "reference to an unknown parameter", mutate: func(tpl *v1alpha1.ActionTemplate) {
			tpl.Spec.Command = []string{"{{ .Parameters.nope }}"}
		}, want: []string{"spec.command[0]: FieldValueInvalid"}},
		{name: "wildcard, escalation and above the ceiling", mutate: func(tpl *v1alpha1.ActionTemplate) {
			tpl.Spec.RBAC.Rules = []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"*"}, Verbs: []string{"get"}},
				{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"roles"}, Verbs: []string{"escalate"}},
			}
		}, want: []string{"spec.rbac.rules: FieldValueForbidden", "spec.rbac.rules[0].resources[0]: FieldValueForbidden", "spec.rbac.rules[1].verbs[0]: FieldValueForbidden"}},
		{name: "reserved env and timeouts out of order", mutate: func(tpl *v1alpha1.ActionTemplate) {
			tpl.Spec.Env = []v1alpha1.TemplatedEnvVar{{Name: v1alpha1.EnvDryRun, Value: "false"}}
			tpl.Spec.DefaultTimeout = &metav1.Duration{Duration: 3600e9}
		}, want: []string{"spec.defaultTimeout: FieldValueInvalid", "spec.env[0].name: FieldValueForbidden"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tpl := readyTemplate("scale", scaleSchema)
			tt.mutate(tpl)
			_, err := v.ValidateCreate(context.Background(), tpl)
			if got := causes(t, err); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("causes %v, want %v (%v)", got, tt.want, err)
			}
		})
	}
}

// largeSchema returns a parameter schema of about size bytes: many typed, bounded properties.
func largeSchema(size int) (string, map[string]any) {
	props := map[string]any{}
	params := map[string]any{}
	for i := 0; ; i++ {
		b, _ := json.Marshal(props)
		if len(b) >= size {
			break
		}
		name := fmt.Sprintf("p%03d", i)
		props[name] = map[string]any{"type": "integer", "minimum": 0, "maximum": 1000, "description": "a bounded integer parameter"}
		params[name] = i
	}
	b, _ := json.Marshal(map[string]any{"type": "object", "additionalProperties": false, "properties": props})
	return string(b), params
}

// cachedReader returns what the webhooks read templates from in the manager: a controller-runtime
// cache (an informer and its indexer, and the cache's reader with its copying rules) holding
// templates, fed from memory instead of an API server. The fake client is no stand-in for it when
// reads are measured: it encodes and decodes every object it returns.
func cachedReader(tb testing.TB, templates ...*v1alpha1.ActionTemplate) client.Reader {
	tb.Helper()
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(v1alpha1.GroupVersion.WithKind("ActionTemplate"), meta.RESTScopeRoot)
	list := &v1alpha1.ActionTemplateList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}}
	for _, tpl := range templates {
		list.Items = append(list.Items, *tpl.DeepCopy())
	}
	c, err := cache.New(&rest.Config{Host: "https://127.0.0.1:1"}, cache.Options{
		Scheme: testScheme(tb), Mapper: mapper,
		NewInformer: func(_ toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
			return toolscache.NewSharedIndexInformer(listThenWatch{&toolscache.ListWatch{
				ListWithContextFunc:  func(context.Context, metav1.ListOptions) (runtime.Object, error) { return list.DeepCopy(), nil },
				WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return watch.NewFake(), nil },
			}}, obj, resync, indexers)
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	go func() { _ = c.Start(ctx) }()
	if _, err := c.GetInformer(ctx, &v1alpha1.ActionTemplate{}); err != nil {
		tb.Fatal(err)
	}
	if !c.WaitForCacheSync(ctx) {
		tb.Fatal("the cache did not sync")
	}
	return c
}

// listThenWatch lists and then watches: it does not stream the initial list as a watch (the
// reflector's watch-list mode), which only an API server does.
type listThenWatch struct{ *toolscache.ListWatch }

func (listThenWatch) IsWatchListSemanticsUnSupported() bool { return true }

// BenchmarkAdmissionReview measures one admission review of an execution, decoding included,
// for a template with a 10 KB parameter schema, read from a cache as the manager reads it.
// SubjectAccessReviews are answered in process: their cost is the API server's.
func BenchmarkAdmissionReview(b *testing.B) {
	schemaJSON, params := largeSchema(10 * 1024)
	reader := cachedReader(b, readyTemplate("scale", schemaJSON))
	v := &KubernetesExecutionValidator{Reader: reader, Mapper: testMapper(), Validator: &validation.Validator{},
		Reviewer: &reviewer{allowed: map[string]bool{"get deployments": true, "patch deployments": true, "get deployments/scale": true, "patch deployments/scale": true}}}
	handler := admission.WithValidator[*v1alpha1.KubernetesExecution](testScheme(b), v)
	raw, _ := json.Marshal(params)
	obj := execution(string(raw))
	obj.APIVersion, obj.Kind = v1alpha1.GroupVersion.String(), "KubernetesExecution"
	body, _ := json.Marshal(obj)
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "1", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: body},
		Kind:     metav1.GroupVersionKind{Group: v1alpha1.GroupVersion.Group, Version: "v1alpha1", Kind: "KubernetesExecution"},
		UserInfo: authenticationv1.UserInfo{Username: "alice", Groups: []string{"team"}}, // as admitted() records
	}}
	b.ReportMetric(float64(len(schemaJSON)), "schema-bytes")
	b.ReportAllocs()
	for b.Loop() {
		resp := handler.Handle(context.Background(), req)
		if !resp.Allowed {
			b.Fatalf("denied: %v", resp.Result)
		}
		v.Reviewer.(*reviewer).asked = v.Reviewer.(*reviewer).asked[:0]
	}
}

func TestAdmissionRecorder(t *testing.T) {
	reader := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(readyTemplate("scale", scaleSchema)).Build()
	d := &AdmissionRecorder{Reader: reader}
	user := authenticationv1.UserInfo{Username: "alice", UID: "42", Groups: []string{"team", "system:authenticated"},
		Extra: map[string]authenticationv1.ExtraValue{"scopes": {"a"}}}
	want := &v1alpha1.AdmissionRecord{
		Requester:   v1alpha1.UserInfo{Username: "alice", UID: "42", Groups: []string{"team", "system:authenticated"}, Extra: map[string]v1alpha1.ExtraValue{"scopes": {"a"}}},
		TemplateUID: "uid-scale", TemplateGeneration: 1,
	}
	raw := func(obj *v1alpha1.KubernetesExecution) runtime.RawExtension {
		b, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		return runtime.RawExtension{Raw: b}
	}
	// patched returns what the one patch operation sets spec.admission to (nil for a removal).
	patched := func(resp admission.Response) *v1alpha1.AdmissionRecord {
		t.Helper()
		if !resp.Allowed || len(resp.Patches) != 1 || resp.Patches[0].Path != "/spec/admission" {
			t.Fatalf("want one patch of /spec/admission, got %+v", resp)
		}
		if resp.Patches[0].Operation == "remove" {
			return nil
		}
		b, _ := json.Marshal(resp.Patches[0].Value)
		got := &v1alpha1.AdmissionRecord{}
		if err := json.Unmarshal(b, got); err != nil {
			t.Fatal(err)
		}
		return got
	}

	// A create records the requesting user and the template, whatever the client sent.
	forged := execution(`{"replicas":1}`, func(o *v1alpha1.KubernetesExecution) { admitted(o, "root") })
	resp := d.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Operation: admissionv1.Create, UserInfo: user, Object: raw(forged),
	}})
	if got := patched(resp); !reflect.DeepEqual(got, want) {
		t.Fatalf("recorded %+v, want %+v", got, want)
	}

	// An update keeps the stored record: a client can neither change nor drop it.
	stored := forged.DeepCopy()
	stored.Spec.Admission = want
	for _, sent := range []*v1alpha1.AdmissionRecord{nil, {Requester: v1alpha1.UserInfo{Username: "root"}}} {
		obj := stored.DeepCopy()
		obj.Spec.Admission = sent
		resp := d.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			Operation: admissionv1.Update, UserInfo: authenticationv1.UserInfo{Username: "root"}, Object: raw(obj), OldObject: raw(stored),
		}})
		if got := patched(resp); !reflect.DeepEqual(got, want) {
			t.Fatalf("an update sending %+v leaves %+v, want the stored %+v", sent, got, want)
		}
	}
	// An update that keeps the record is let through untouched.
	resp = d.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Operation: admissionv1.Update, Object: raw(stored), OldObject: raw(stored),
	}})
	if !resp.Allowed || len(resp.Patches) != 0 {
		t.Fatalf("an unchanged record was patched: %+v", resp)
	}

	// On behalf of bob: bob and his groups are the requester, alice its creator, when she may
	// impersonate him and them.
	forBob := execution(`{"replicas":1}`, onBehalfOfBob, func(o *v1alpha1.KubernetesExecution) { admitted(o, "root") })
	create := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{Operation: admissionv1.Create, UserInfo: user, Object: raw(forBob)}}
	d.Reviewer = &reviewer{allowed: map[string]bool{"impersonate users": true, "impersonate groups": true}}
	wantForBob := &v1alpha1.AdmissionRecord{
		Requester: v1alpha1.UserInfo{Username: "bob", Groups: []string{"oncall", "sre"}}, CreatedBy: &want.Requester,
		TemplateUID: "uid-scale", TemplateGeneration: 1,
	}
	if got := patched(d.Handle(context.Background(), create)); !reflect.DeepEqual(got, wantForBob) {
		t.Fatalf("recorded %+v, want %+v", got, wantForBob)
	}
	// Without the right to impersonate one of his groups, the execution is refused, naming it.
	d.Reviewer = &reviewer{allowed: map[string]bool{"impersonate users": true}}
	resp = d.Handle(context.Background(), create)
	if resp.Allowed || len(resp.Patches) != 0 || resp.Result == nil || resp.Result.Reason != metav1.StatusReasonInvalid || len(resp.Result.Details.Causes) != 1 {
		t.Fatalf("an execution on behalf of a user the creator may not impersonate: %+v", resp)
	}
	if c := resp.Result.Details.Causes[0]; c.Field != "metadata.annotations[kubernaut.io/on-behalf-of]" ||
		!strings.Contains(c.Message, `alice may not impersonate groups "oncall" (cluster-wide), impersonate groups "sre" (cluster-wide)`) {
		t.Fatalf("cause %+v", c)
	}
}

func TestApprovalRecorder(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	waiting := execution(`{"replicas":1}`, func(o *v1alpha1.KubernetesExecution) {
		o.Status.Phase = v1alpha1.PhaseAwaitingApproval
		o.Status.Conditions = []metav1.Condition{
			{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAwaitingApproval, LastTransitionTime: metav1.NewTime(now.Add(-time.Hour))},
			{Type: v1alpha1.ConditionApproved, Status: metav1.ConditionUnknown, Reason: v1alpha1.ReasonAwaitingApproval, LastTransitionTime: metav1.NewTime(now.Add(-time.Hour))},
		}
	})
	raw := func(obj *v1alpha1.KubernetesExecution) runtime.RawExtension {
		b, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		return runtime.RawExtension{Raw: b}
	}
	bob := authenticationv1.UserInfo{Username: "bob", UID: "7", Groups: []string{"oncall", "system:authenticated"}}
	review := func(old, obj *v1alpha1.KubernetesExecution) admission.Response {
		a := &ApprovalRecorder{Clock: clocktesting.NewFakePassiveClock(now.Add(300 * time.Millisecond))}
		return a.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			Operation: admissionv1.Update, SubResource: "status", UserInfo: bob, Object: raw(obj), OldObject: raw(old),
		}})
	}
	decide := func(status metav1.ConditionStatus, message string) *v1alpha1.KubernetesExecution {
		obj := waiting.DeepCopy()
		obj.Status.Conditions[1].Status, obj.Status.Conditions[1].Reason, obj.Status.Conditions[1].Message = status, "ByHand", message
		return obj
	}

	for _, tt := range []struct {
		status   metav1.ConditionStatus
		decision v1alpha1.ApprovalDecision
	}{{metav1.ConditionTrue, v1alpha1.DecisionApproved}, {metav1.ConditionFalse, v1alpha1.DecisionDenied}} {
		resp := review(waiting, decide(tt.status, "checked with the owner"))
		if !resp.Allowed || len(resp.Patches) != 2 {
			t.Fatalf("%s: want the record and the transition time, got %+v", tt.status, resp)
		}
		if p := resp.Patches[0]; p.Operation != "add" || p.Path != "/status/approval" {
			t.Fatalf("%s: first patch %+v", tt.status, p)
		}
		b, _ := json.Marshal(resp.Patches[0].Value)
		got := v1alpha1.ApprovalRecord{}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		want := v1alpha1.ApprovalRecord{Decision: tt.decision, Approver: UserInfoOf(bob), Time: metav1.NewTime(now), Reason: "checked with the owner"}
		if !equality.Semantic.DeepEqual(got, want) {
			t.Fatalf("%s: recorded %+v, want %+v", tt.status, got, want)
		}
		if p := resp.Patches[1]; p.Operation != "replace" || p.Path != "/status/conditions/1/lastTransitionTime" || fmt.Sprint(p.Value) != fmt.Sprint(metav1.NewTime(now)) {
			t.Fatalf("%s: second patch %+v", tt.status, p)
		}
	}

	// A transition time the approver set is theirs.
	obj := decide(metav1.ConditionTrue, "")
	obj.Status.Conditions[1].LastTransitionTime = metav1.NewTime(now.Add(-time.Second))
	if resp := review(waiting, obj); !resp.Allowed || len(resp.Patches) != 1 {
		t.Fatalf("a decision with its own transition time: %+v", resp)
	}

	// Anything that is not a decision passes unrecorded: the status policy refuses it.
	decided := waiting.DeepCopy()
	decided.Status.Approval = &v1alpha1.ApprovalRecord{Decision: v1alpha1.DecisionApproved, Approver: v1alpha1.UserInfo{Username: "carol"}}
	again := decided.DeepCopy()
	again.Status.Conditions[1].Status = metav1.ConditionFalse
	phaseOnly := waiting.DeepCopy()
	phaseOnly.Status.Phase = v1alpha1.PhaseRunning
	for name, pair := range map[string][2]*v1alpha1.KubernetesExecution{
		"a second decision":           {decided, again},
		"a change of another field":   {waiting, phaseOnly},
		"the Approved condition kept": {waiting, waiting},
	} {
		if resp := review(pair[0], pair[1]); !resp.Allowed || len(resp.Patches) != 0 {
			t.Errorf("%s: %+v", name, resp)
		}
	}

	// A reason longer than the record holds is refused, naming the condition's message.
	resp := review(waiting, decide(metav1.ConditionFalse, strings.Repeat("x", 1025)))
	if resp.Allowed || resp.Result == nil || len(resp.Result.Details.Causes) != 1 || resp.Result.Details.Causes[0].Field != "status.conditions[1].message" {
		t.Fatalf("a reason of 1025 bytes: %+v", resp)
	}
}
