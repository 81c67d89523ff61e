// Package grants holds the pure parts of the executor's RBAC: which rules a template may
// grant at all, whether they fit under the ceiling, and how an execution's copy is narrowed to
// its target.
package grants

import (
	"fmt"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	rbacvalidation "k8s.io/component-helpers/auth/rbac/validation"
)

// forbiddenVerbs let a subject raise its own or others' privileges; no template may grant them.
var forbiddenVerbs = []string{"escalate", "bind", "impersonate"}

// namedVerbs act on one named object, so a rule's resourceNames restrict them. list, watch,
// create and deletecollection on a collection are not narrowed.
var namedVerbs = []string{"get", "update", "patch", "delete"}

// CheckRules returns every rule that no template may grant: wildcards, escalating verbs and
// non-resource URLs. path is the rules' field path.
func CheckRules(rules []rbacv1.PolicyRule, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, r := range rules {
		p := path.Index(i)
		for _, list := range []struct {
			name   string
			values []string
		}{{"verbs", r.Verbs}, {"apiGroups", r.APIGroups}, {"resources", r.Resources}, {"resourceNames", r.ResourceNames}} {
			for j, v := range list.values {
				if strings.Contains(v, "*") {
					errs = append(errs, field.Forbidden(p.Child(list.name).Index(j), fmt.Sprintf("wildcard %q: templates must name exactly what they need", v)))
				}
			}
		}
		for j, v := range r.Verbs {
			if slices.Contains(forbiddenVerbs, strings.ToLower(v)) {
				errs = append(errs, field.Forbidden(p.Child("verbs").Index(j), fmt.Sprintf("verb %q lets the action raise privileges", v)))
			}
		}
		if len(r.NonResourceURLs) > 0 {
			errs = append(errs, field.Forbidden(p.Child("nonResourceURLs"), "actions act on resources, not on non-resource URLs"))
		}
		if len(r.Verbs) == 0 {
			errs = append(errs, field.Required(p.Child("verbs"), ""))
		}
		if len(r.Resources) == 0 {
			errs = append(errs, field.Required(p.Child("resources"), ""))
		}
		if len(r.APIGroups) == 0 {
			errs = append(errs, field.Required(p.Child("apiGroups"), `use "" for the core group`))
		}
	}
	return errs
}

// Uncovered returns the parts of rules that ceiling does not cover, one verb and resource
// per rule, or nil when ceiling covers them all.
func Uncovered(ceiling, rules []rbacv1.PolicyRule) []rbacv1.PolicyRule {
	ok, missing := rbacvalidation.Covers(ceiling, rules)
	if ok {
		return nil
	}
	return missing
}

// FormatRules renders rules compactly for messages: "get,patch apps/deployments".
func FormatRules(rules []rbacv1.PolicyRule) string {
	parts := make([]string, 0, len(rules))
	for _, r := range rules {
		var res []string
		for _, g := range r.APIGroups {
			for _, rs := range r.Resources {
				if g == "" {
					res = append(res, rs)
				} else {
					res = append(res, g+"/"+rs)
				}
			}
		}
		// A non-resource URL is named as RBAC names it, so that a rule refused for holding one
		// does not read as a verb on nothing.
		res = append(res, r.NonResourceURLs...)
		s := strings.Join(r.Verbs, ",") + " " + strings.Join(res, ",")
		if len(r.ResourceNames) > 0 {
			s += " named " + strings.Join(r.ResourceNames, ",")
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// Target identifies the object an execution acts on, as RBAC names it.
type Target struct {
	// Group is the API group of the target's kind ("" for the core group).
	Group string
	// Resource is the plural resource of the target's kind, for example deployments.
	Resource string
	// Name is the target's name.
	Name string
	// Namespace is the target's namespace, "" for a cluster-scoped kind.
	Namespace string
	// ClusterScoped is true for kinds such as Node that live in no namespace.
	ClusterScoped bool
}

// Narrow returns rules with every permission on the target's own resource restricted to the
// target's name: the named verbs on the resource itself and every verb on its subresources
// (which always address one object, such as pods/eviction or deployments/scale). Permissions
// on other resources are unchanged.
func Narrow(rules []rbacv1.PolicyRule, t Target) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, r := range rules {
		if !slices.Contains(r.APIGroups, t.Group) || len(r.ResourceNames) > 0 {
			out = append(out, *r.DeepCopy())
			continue
		}
		var own, ownSub, others []string
		for _, res := range r.Resources {
			base, sub, _ := strings.Cut(res, "/")
			switch {
			case base == t.Resource && sub == "":
				own = append(own, res)
			case base == t.Resource:
				ownSub = append(ownSub, res)
			default:
				others = append(others, res)
			}
		}
		if len(own)+len(ownSub) == 0 {
			out = append(out, *r.DeepCopy())
			continue
		}
		otherGroups := slices.DeleteFunc(slices.Clone(r.APIGroups), func(g string) bool { return g == t.Group })
		if len(otherGroups) > 0 {
			out = append(out, rbacv1.PolicyRule{APIGroups: otherGroups, Resources: slices.Clone(r.Resources), Verbs: slices.Clone(r.Verbs)})
		}
		group := []string{t.Group}
		if len(others) > 0 {
			out = append(out, rbacv1.PolicyRule{APIGroups: group, Resources: others, Verbs: slices.Clone(r.Verbs)})
		}
		if len(ownSub) > 0 {
			out = append(out, rbacv1.PolicyRule{APIGroups: group, Resources: ownSub, Verbs: slices.Clone(r.Verbs), ResourceNames: []string{t.Name}})
		}
		if len(own) > 0 {
			var named, collection []string
			for _, v := range r.Verbs {
				if slices.Contains(namedVerbs, v) {
					named = append(named, v)
				} else {
					collection = append(collection, v)
				}
			}
			if len(named) > 0 {
				out = append(out, rbacv1.PolicyRule{APIGroups: group, Resources: own, Verbs: named, ResourceNames: []string{t.Name}})
			}
			if len(collection) > 0 {
				out = append(out, rbacv1.PolicyRule{APIGroups: group, Resources: own, Verbs: collection})
			}
		}
	}
	return out
}
