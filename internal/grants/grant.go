package grants

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// Grant is everything one execution's ServiceAccount is given while the execution runs. The
// controller creates exactly this, and the admission webhook and the controller (before each
// attempt) ask one SubjectAccessReview per permission of it, so the requester always holds all
// of it: the executor is never a way around RBAC.
type Grant struct {
	// Target is the object the execution acts on, resolved through the API server's discovery.
	Target Target
	// Namespace is where Namespaced rules are granted: the target's namespace, or the
	// execution's own for a cluster-scoped target.
	Namespace string
	// Namespaced rules are granted by a Role and RoleBinding in Namespace.
	Namespaced []rbacv1.PolicyRule
	// Cluster rules are granted cluster-wide by a ClusterRole and ClusterRoleBinding: rules on
	// cluster-scoped resources, and every rule of a template whose scope is Cluster.
	Cluster []rbacv1.PolicyRule
}

var targetPath = field.NewPath("spec", "action", "target")

// Compute returns the grant an execution of tpl gets: the template's rules narrowed to the
// target (see Narrow), split by where they apply. mapper is the API server's discovery; a target
// kind it cannot map, or a namespace that does not fit the kind's scope, is a field error: the
// grant fails closed. executionNamespace is the execution's own namespace.
func Compute(mapper meta.RESTMapper, tpl *v1alpha1.ActionTemplate, target v1alpha1.TargetSpec, executionNamespace string) (Grant, field.ErrorList) {
	t, errs := ResolveTarget(mapper, tpl.Spec.RBAC.Rules, target)
	if len(errs) > 0 {
		return Grant{}, errs
	}
	g := Grant{Target: t, Namespace: t.Namespace}
	if t.ClusterScoped {
		g.Namespace = executionNamespace
	}
	rules := Narrow(tpl.Spec.RBAC.Rules, t)
	if tpl.Spec.RBAC.Scope == v1alpha1.RBACScopeCluster {
		// Node actions: draining a node evicts pods in every namespace.
		g.Cluster = rules
	} else {
		g.Namespaced, g.Cluster = splitByScope(mapper, rules)
	}
	if len(g.Namespaced) == 0 {
		g.Namespace = ""
	}
	return g, nil
}

// ResolveTarget maps the target's kind to its resource through discovery: first in the API
// groups the rules name, then in the core group, then in any group that has exactly one kind of
// that name. It checks that the namespace fits the kind's scope.
func ResolveTarget(mapper meta.RESTMapper, rules []rbacv1.PolicyRule, target v1alpha1.TargetSpec) (Target, field.ErrorList) {
	kindPath := targetPath.Child("resourceKind")
	m, err := mapKind(mapper, rules, target.ResourceKind)
	if err != nil {
		return Target{}, field.ErrorList{field.Invalid(kindPath, target.ResourceKind, err.Error())}
	}
	t := Target{
		Group: m.Resource.Group, Resource: m.Resource.Resource, Name: target.ResourceName,
		Namespace: target.Namespace, ClusterScoped: m.Scope.Name() == meta.RESTScopeNameRoot,
	}
	switch {
	case t.ClusterScoped && target.Namespace != "":
		return Target{}, field.ErrorList{field.Invalid(targetPath.Child("namespace"), target.Namespace,
			fmt.Sprintf("%s is cluster-scoped: leave the namespace empty", target.ResourceKind))}
	case !t.ClusterScoped && target.Namespace == "":
		return Target{}, field.ErrorList{field.Required(targetPath.Child("namespace"),
			fmt.Sprintf("%s is namespaced: name the target's namespace", target.ResourceKind))}
	}
	return t, nil
}

func mapKind(mapper meta.RESTMapper, rules []rbacv1.PolicyRule, kind string) (*meta.RESTMapping, error) {
	var groups []string
	for _, r := range rules {
		for _, g := range r.APIGroups {
			if !slices.Contains(groups, g) {
				groups = append(groups, g)
			}
		}
	}
	if !slices.Contains(groups, "") {
		groups = append(groups, "")
	}
	for _, g := range groups {
		m, err := mapper.RESTMapping(schema.GroupKind{Group: g, Kind: kind})
		if err == nil {
			return m, nil
		}
		if !meta.IsNoMatchError(err) {
			return nil, fmt.Errorf("discovery failed: %w", err)
		}
	}
	// A kind in a group the rules do not name: look for its resource in every group.
	plural, _ := meta.UnsafeGuessKindToResource(schema.GroupVersionKind{Kind: kind})
	kinds, err := mapper.KindsFor(schema.GroupVersionResource{Resource: plural.Resource})
	if err != nil && !meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("discovery failed: %w", err)
	}
	var found []string
	for _, gvk := range kinds {
		if gvk.Kind == kind && !slices.Contains(found, gvk.Group) {
			found = append(found, gvk.Group)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("the API server serves no kind %q, so nothing can be granted on it", kind)
	case 1:
		return mapper.RESTMapping(schema.GroupKind{Group: found[0], Kind: kind})
	}
	return nil, fmt.Errorf("kind %q is served by several API groups (%s): the template's rules must name the target's group", kind, strings.Join(found, ", "))
}

// splitByScope separates rules on namespaced resources from rules on cluster-scoped ones.
// Resources the API server does not know are treated as namespaced: granted in one namespace,
// never cluster-wide, and checked there.
func splitByScope(mapper meta.RESTMapper, rules []rbacv1.PolicyRule) (namespaced, cluster []rbacv1.PolicyRule) {
	for _, rule := range rules {
		var ns, cl []string
		for _, res := range rule.Resources {
			base, _, _ := strings.Cut(res, "/")
			if clusterScoped(mapper, rule.APIGroups, base) {
				cl = append(cl, res)
			} else {
				ns = append(ns, res)
			}
		}
		if len(ns) > 0 {
			c := *rule.DeepCopy()
			c.Resources = ns
			namespaced = append(namespaced, c)
		}
		if len(cl) > 0 {
			c := *rule.DeepCopy()
			c.Resources = cl
			cluster = append(cluster, c)
		}
	}
	return namespaced, cluster
}

func clusterScoped(mapper meta.RESTMapper, groups []string, resource string) bool {
	for _, g := range groups {
		gvk, err := mapper.KindFor(schema.GroupVersionResource{Group: g, Resource: resource})
		if err != nil {
			continue
		}
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err == nil && m.Scope.Name() == meta.RESTScopeNameRoot {
			return true
		}
	}
	return false
}

// Permission is one thing a grant allows, as a SubjectAccessReview asks it: a verb on a resource
// or subresource, on one named object or (Name "") on every object of the type, in a namespace
// or (Namespace "") cluster-wide.
type Permission struct {
	Verb, Group, Resource, Subresource, Name, Namespace string
}

// Permissions lists every permission of the grant, once each, in a stable order.
func (g Grant) Permissions() []Permission {
	seen := map[Permission]bool{}
	var out []Permission
	add := func(rules []rbacv1.PolicyRule, namespace string) {
		for _, r := range rules {
			names := r.ResourceNames
			if len(names) == 0 {
				names = []string{""}
			}
			for _, group := range r.APIGroups {
				for _, res := range r.Resources {
					base, sub, _ := strings.Cut(res, "/")
					for _, verb := range r.Verbs {
						for _, name := range names {
							p := Permission{Verb: verb, Group: group, Resource: base, Subresource: sub, Name: name, Namespace: namespace}
							if !seen[p] {
								seen[p] = true
								out = append(out, p)
							}
						}
					}
				}
			}
		}
	}
	add(g.Namespaced, g.Namespace)
	add(g.Cluster, "")
	sort.SliceStable(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// String renders a permission for people: `patch nodes "worker-1" (cluster-wide)`,
// `create pods/eviction in namespace web`.
func (p Permission) String() string {
	s := p.Verb + " " + p.Resource
	if p.Group != "" {
		s += "." + p.Group
	}
	if p.Subresource != "" {
		s += "/" + p.Subresource
	}
	if p.Name != "" {
		s += fmt.Sprintf(" %q", p.Name)
	}
	if p.Namespace == "" {
		return s + " (cluster-wide)"
	}
	return s + " in namespace " + p.Namespace
}
