package grants

import (
	"reflect"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func rule(groups, resources, verbs []string, names ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: groups, Resources: resources, Verbs: verbs, ResourceNames: names}
}

func s(v ...string) []string { return v }

func TestCheckRules(t *testing.T) {
	tests := []struct {
		name  string
		rules []rbacv1.PolicyRule
		want  []string
	}{
		{"fine", []rbacv1.PolicyRule{rule(s("apps"), s("deployments", "deployments/scale"), s("get", "patch"))}, nil},
		{"wildcard verb", []rbacv1.PolicyRule{rule(s("apps"), s("deployments"), s("*"))}, s("spec.rbac.rules[0].verbs[0]")},
		{"wildcard group and subresource", []rbacv1.PolicyRule{rule(s("*"), s("pods/*"), s("get"))},
			s("spec.rbac.rules[0].apiGroups[0]", "spec.rbac.rules[0].resources[0]")},
		{"escalating verbs", []rbacv1.PolicyRule{rule(s("rbac.authorization.k8s.io"), s("roles"), s("get", "escalate", "bind")), rule(s(""), s("users"), s("impersonate"))},
			s("spec.rbac.rules[0].verbs[1]", "spec.rbac.rules[0].verbs[2]", "spec.rbac.rules[1].verbs[0]")},
		{"non-resource URL", []rbacv1.PolicyRule{{NonResourceURLs: s("/metrics"), Verbs: s("get")}},
			s("spec.rbac.rules[0].nonResourceURLs", "spec.rbac.rules[0].resources", "spec.rbac.rules[0].apiGroups")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := CheckRules(tt.rules, field.NewPath("spec", "rbac", "rules"))
			var got []string
			for _, e := range errs {
				got = append(got, e.Field)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("fields %v, want %v (%v)", got, tt.want, errs)
			}
		})
	}
}

func TestUncovered(t *testing.T) {
	ceiling := []rbacv1.PolicyRule{rule(s("apps"), s("deployments", "deployments/scale"), s("get", "patch", "update")), rule(s(""), s("pods"), s("get"))}
	if got := Uncovered(ceiling, []rbacv1.PolicyRule{rule(s("apps"), s("deployments/scale"), s("update"))}); got != nil {
		t.Fatalf("covered rules reported missing: %v", got)
	}
	got := Uncovered(ceiling, []rbacv1.PolicyRule{rule(s(""), s("pods", "secrets"), s("get", "delete"))})
	if want := "delete pods; get secrets; delete secrets"; FormatRules(got) != want {
		t.Fatalf("missing %q, want %q", FormatRules(got), want)
	}
	got = Uncovered(ceiling, []rbacv1.PolicyRule{{Verbs: s("get"), NonResourceURLs: s("/metrics")}})
	if want := "get /metrics"; FormatRules(got) != want {
		t.Fatalf("missing %q, want %q", FormatRules(got), want)
	}
}

func TestNarrow(t *testing.T) {
	target := Target{Group: "apps", Resource: "deployments", Name: "web"}
	tests := []struct {
		name  string
		rules []rbacv1.PolicyRule
		t     Target
		want  []rbacv1.PolicyRule
	}{
		{"named verbs narrowed, list kept", []rbacv1.PolicyRule{rule(s("apps"), s("deployments"), s("get", "list", "patch"))}, target,
			[]rbacv1.PolicyRule{rule(s("apps"), s("deployments"), s("get", "patch"), "web"), rule(s("apps"), s("deployments"), s("list"))}},
		{"subresources narrowed for every verb", []rbacv1.PolicyRule{rule(s("apps"), s("deployments/scale"), s("get", "update"))}, target,
			[]rbacv1.PolicyRule{rule(s("apps"), s("deployments/scale"), s("get", "update"), "web")}},
		{"other resources of the group untouched", []rbacv1.PolicyRule{rule(s("apps"), s("replicasets", "deployments"), s("get"))}, target,
			[]rbacv1.PolicyRule{rule(s("apps"), s("replicasets"), s("get")), rule(s("apps"), s("deployments"), s("get"), "web")}},
		{"other groups untouched", []rbacv1.PolicyRule{rule(s(""), s("pods"), s("get"))}, target,
			[]rbacv1.PolicyRule{rule(s(""), s("pods"), s("get"))}},
		{"cluster-scoped node", []rbacv1.PolicyRule{rule(s(""), s("nodes"), s("get", "patch"))}, Target{Group: "", Resource: "nodes", Name: "node-1"},
			[]rbacv1.PolicyRule{rule(s(""), s("nodes"), s("get", "patch"), "node-1")}},
		{"pods/eviction create", []rbacv1.PolicyRule{rule(s(""), s("pods", "pods/eviction"), s("get", "create"))}, Target{Resource: "pods", Name: "p"},
			[]rbacv1.PolicyRule{rule(s(""), s("pods/eviction"), s("get", "create"), "p"), rule(s(""), s("pods"), s("get"), "p"), rule(s(""), s("pods"), s("create"))}},
		{"already named kept as written", []rbacv1.PolicyRule{rule(s("apps"), s("deployments"), s("get"), "other")}, target,
			[]rbacv1.PolicyRule{rule(s("apps"), s("deployments"), s("get"), "other")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Narrow(tt.rules, tt.t); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got\n%v\nwant\n%v", FormatRules(got), FormatRules(tt.want))
			}
		})
	}
}
