package grants

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	rbacvalidation "k8s.io/component-helpers/auth/rbac/validation"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// testMapper knows a few namespaced and cluster-scoped kinds, and one kind served by two groups.
func testMapper() meta.RESTMapper {
	var gvs []schema.GroupVersion
	for _, g := range s("", "apps", "example.com", "other.example.com", "storage.example.com") {
		gvs = append(gvs, schema.GroupVersion{Group: g, Version: "v1"})
	}
	m := meta.NewDefaultRESTMapper(gvs)
	add := func(group, kind string, scope meta.RESTScope) {
		m.Add(schema.GroupVersionKind{Group: group, Version: "v1", Kind: kind}, scope)
	}
	add("", "Pod", meta.RESTScopeNamespace)
	add("", "Node", meta.RESTScopeRoot)
	add("", "Namespace", meta.RESTScopeRoot)
	add("apps", "Deployment", meta.RESTScopeNamespace)
	add("apps", "ReplicaSet", meta.RESTScopeNamespace)
	add("example.com", "Widget", meta.RESTScopeNamespace)
	add("other.example.com", "Widget", meta.RESTScopeNamespace)
	add("storage.example.com", "Volume", meta.RESTScopeRoot)
	return m
}

func template(scope v1alpha1.RBACScope, rules ...rbacv1.PolicyRule) *v1alpha1.ActionTemplate {
	return &v1alpha1.ActionTemplate{Spec: v1alpha1.ActionTemplateSpec{RBAC: v1alpha1.ActionRBAC{Scope: scope, Rules: rules}}}
}

func TestCompute(t *testing.T) {
	drain := template(v1alpha1.RBACScopeCluster,
		rule(s(""), s("nodes"), s("get", "patch")), rule(s(""), s("pods"), s("list")), rule(s(""), s("pods/eviction"), s("create")))
	rollback := template(v1alpha1.RBACScopeNamespaced,
		rule(s("apps"), s("deployments"), s("get", "patch")), rule(s("apps"), s("replicasets"), s("list")), rule(s(""), s("nodes"), s("get")))
	node := v1alpha1.TargetSpec{ResourceKind: "Node", ResourceName: "n1"}
	web := v1alpha1.TargetSpec{Namespace: "prod", ResourceKind: "Deployment", ResourceName: "web"}

	tests := []struct {
		name   string
		tpl    *v1alpha1.ActionTemplate
		target v1alpha1.TargetSpec
		perms  []string
		errs   []string
	}{
		{name: "drain-node: the node by name, pods cluster-wide", tpl: drain, target: node, perms: s(
			`create pods/eviction (cluster-wide)`, `get nodes "n1" (cluster-wide)`, `list pods (cluster-wide)`, `patch nodes "n1" (cluster-wide)`)},
		{name: "namespaced rules in the target's namespace, cluster-scoped ones cluster-wide", tpl: rollback, target: web, perms: s(
			`get deployments.apps "web" in namespace prod`, `get nodes (cluster-wide)`, `list replicasets.apps in namespace prod`, `patch deployments.apps "web" in namespace prod`)},
		{name: "a cluster-scoped target may not name a namespace", tpl: drain, target: v1alpha1.TargetSpec{Namespace: "prod", ResourceKind: "Node", ResourceName: "n1"},
			errs: s("spec.action.target.namespace")},
		{name: "a namespaced target must name one", tpl: rollback, target: v1alpha1.TargetSpec{ResourceKind: "Deployment", ResourceName: "web"},
			errs: s("spec.action.target.namespace")},
		{name: "an unknown kind fails closed", tpl: rollback, target: v1alpha1.TargetSpec{Namespace: "prod", ResourceKind: "Gadget", ResourceName: "g"},
			errs: s("spec.action.target.resourceKind")},
		{name: "a kind of two groups the rules do not name fails closed", tpl: rollback, target: v1alpha1.TargetSpec{Namespace: "prod", ResourceKind: "Widget", ResourceName: "w"},
			errs: s("spec.action.target.resourceKind")},
		{name: "a kind in a group no rule names is found by discovery", tpl: template(v1alpha1.RBACScopeNamespaced),
			target: v1alpha1.TargetSpec{ResourceKind: "Volume", ResourceName: "v"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, errs := Compute(testMapper(), tt.tpl, tt.target, "ops")
			var fields []string
			for _, e := range errs {
				fields = append(fields, e.Field)
			}
			if !reflect.DeepEqual(fields, tt.errs) {
				t.Fatalf("errors %v, want fields %v", errs, tt.errs)
			}
			var perms []string
			for _, p := range g.Permissions() {
				perms = append(perms, p.String())
			}
			if !reflect.DeepEqual(perms, tt.perms) {
				t.Fatalf("permissions\n%q\nwant\n%q", perms, tt.perms)
			}
		})
	}
}

// TestRequesterCheckCoversGrant is the property the executor's promise rests on: for any
// template and target, a requester who holds every permission the webhook asks about (one
// SubjectAccessReview per Permission) holds everything the grant gives, in the same scope; and
// the grant narrows named verbs on the target to its name.
func TestRequesterCheckCoversGrant(t *testing.T) {
	resources := []struct{ group, resource string }{
		{"", "pods"}, {"", "pods/eviction"}, {"", "pods/log"}, {"", "nodes"}, {"", "nodes/status"}, {"", "namespaces"},
		{"apps", "deployments"}, {"apps", "deployments/scale"}, {"apps", "replicasets"}, {"example.com", "widgets"}, {"unknown.example.com", "things"},
	}
	verbs := s("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
	targets := []v1alpha1.TargetSpec{
		{Namespace: "prod", ResourceKind: "Deployment", ResourceName: "web"},
		{Namespace: "prod", ResourceKind: "Pod", ResourceName: "web-1"},
		{ResourceKind: "Node", ResourceName: "n1"},
		{ResourceKind: "Namespace", ResourceName: "prod"},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(n int, from []string) []string {
		var out []string
		for range 1 + rng.IntN(n) {
			if v := from[rng.IntN(len(from))]; !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
		return out
	}
	for i := range 5000 {
		var rules []rbacv1.PolicyRule
		for range 1 + rng.IntN(4) {
			var groups, res []string
			for range 1 + rng.IntN(3) {
				r := resources[rng.IntN(len(resources))]
				if !slices.Contains(groups, r.group) {
					groups = append(groups, r.group)
				}
				if !slices.Contains(res, r.resource) {
					res = append(res, r.resource)
				}
			}
			r := rule(groups, res, pick(3, verbs))
			if rng.IntN(8) == 0 {
				r.ResourceNames = pick(2, s("web", "other", "n1"))
			}
			rules = append(rules, r)
		}
		scope := v1alpha1.RBACScopeNamespaced
		if rng.IntN(2) == 0 {
			scope = v1alpha1.RBACScopeCluster
		}
		target := targets[rng.IntN(len(targets))]
		g, errs := Compute(testMapper(), template(scope, rules...), target, "ops")
		if len(errs) > 0 {
			t.Fatalf("case %d: %v", i, errs)
		}
		var clusterHeld, namespaceHeld []rbacv1.PolicyRule
		for _, p := range g.Permissions() {
			res := p.Resource
			if p.Subresource != "" {
				res += "/" + p.Subresource
			}
			r := rule(s(p.Group), s(res), s(p.Verb))
			if p.Name != "" {
				r.ResourceNames = s(p.Name)
			}
			switch p.Namespace {
			case "":
				clusterHeld = append(clusterHeld, r)
			case g.Namespace:
				namespaceHeld = append(namespaceHeld, r)
			default:
				t.Fatalf("case %d: a review in namespace %q, grant namespace %q", i, p.Namespace, g.Namespace)
			}
		}
		if ok, missing := rbacvalidation.Covers(clusterHeld, g.Cluster); !ok {
			t.Fatalf("case %d: rules %v on %v: cluster-wide grant not covered by the reviews: %v", i, rules, target, missing)
		}
		if ok, missing := rbacvalidation.Covers(append(clusterHeld, namespaceHeld...), g.Namespaced); !ok {
			t.Fatalf("case %d: rules %v on %v: namespaced grant not covered by the reviews: %v", i, rules, target, missing)
		}
		for _, r := range append(slices.Clone(g.Cluster), g.Namespaced...) {
			if !slices.Contains(r.APIGroups, g.Target.Group) || len(r.ResourceNames) > 0 {
				continue
			}
			for _, res := range r.Resources {
				base, sub, _ := strings.Cut(res, "/")
				if base != g.Target.Resource {
					continue
				}
				for _, v := range r.Verbs {
					if sub != "" || slices.Contains(namedVerbs, v) {
						t.Fatalf("case %d: %s %s on the target is granted type-wide: %v", i, v, res, r)
					}
				}
			}
		}
	}
}
