package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/grants"
)

// Labels on the RBAC objects of a grant.
const (
	// LabelExecutionNamespace is the namespace of the execution a grant is for.
	LabelExecutionNamespace = "kubernaut.io/execution-namespace"
	// LabelExecutionUID is the UID of the execution a grant is for.
	LabelExecutionUID = "kubernaut.io/execution-uid"
	// LabelAggregateToCeiling marks the ClusterRoles that make up the RBAC ceiling.
	LabelAggregateToCeiling = "kubernaut.io/aggregate-to-ceiling"

	// GrantFinalizer keeps an execution until its grant is revoked.
	GrantFinalizer = "kubernaut.io/revoke-grant"
)

// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings;clusterrolebindings,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=kubernetesexecution.kubernaut.io,resources=kubernetesexecutions,verbs=get;list;watch;patch;update
// +kubebuilder:rbac:groups=kubernetesexecution.kubernaut.io,resources=kubernetesexecutions/finalizers,verbs=update

// grantName names the Role, ClusterRole and bindings of one execution's grant. The namespace
// cannot contain a dot, so the name is unambiguous; the UID's prefix keeps a recreated
// execution of the same name from meeting the old one's leftovers.
func grantName(obj *v1alpha1.KubernetesExecution) string {
	name := "kubernaut-exec." + obj.Namespace + "." + obj.Name + "." + string(obj.UID)[:8]
	if len(name) > 253 {
		name = shortenTo(name, "", 253)
	}
	return name
}

// reconcileGrant gives the action's ServiceAccount its template's rules, narrowed to the
// target, for the execution's lifetime: a Role and RoleBinding in the target's namespace for
// namespaced resources, a ClusterRole and ClusterRoleBinding for cluster-scoped ones (nodes).
// The API server refuses any rule the manager does not hold itself (the ceiling).
func (r *KubernetesExecutionReconciler) reconcileGrant(ctx context.Context, obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate) error {
	if err := r.ensureServiceAccount(ctx, obj, tpl); err != nil {
		return err
	}
	rules := tpl.Spec.RBAC.Rules
	if len(rules) == 0 {
		return nil
	}
	target := obj.Spec.Action.Target
	if t, ok := grants.TargetOf(r.RESTMapper(), rules, target.ResourceKind); ok {
		t.Name = target.ResourceName
		rules = grants.Narrow(rules, t)
	}
	// Cluster scope (node actions) grants every rule cluster-wide: draining a node evicts pods in
	// every namespace. Namespaced scope grants in the target's namespace, and only rules on
	// cluster-scoped resources cluster-wide.
	namespaced, cluster := r.splitByScope(rules)
	if tpl.Spec.RBAC.Scope == v1alpha1.RBACScopeCluster {
		namespaced, cluster = nil, rules
	}
	name := grantName(obj)
	subject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: obj.Namespace, Name: ActionServiceAccountName(tpl.Name)}
	labels := map[string]string{
		LabelManagedBy: ManagedByValue, LabelPartOf: PartOfValue, LabelActionType: tpl.Name, LabelExecution: LabelValue(obj.Name),
		LabelExecutionNamespace: obj.Namespace, LabelExecutionUID: string(obj.UID),
	}
	owner := templateOwner(tpl)

	if len(namespaced) > 0 {
		ns := target.Namespace
		if ns == "" {
			ns = obj.Namespace
		}
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, OwnerReferences: []metav1.OwnerReference{owner}}, Rules: namespaced}
		uid, err := r.ensureRole(ctx, role, &rbacv1.Role{}, func(have client.Object) bool {
			return equality.Semantic.DeepEqual(have.(*rbacv1.Role).Rules, namespaced)
		})
		if err != nil {
			return err
		}
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, OwnerReferences: []metav1.OwnerReference{roleOwner("Role", name, uid)}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects:   []rbacv1.Subject{subject},
		}
		if err := r.ensureBinding(ctx, binding, &rbacv1.RoleBinding{}); err != nil {
			return err
		}
	}
	if len(cluster) > 0 {
		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, OwnerReferences: []metav1.OwnerReference{owner}}, Rules: cluster}
		uid, err := r.ensureRole(ctx, role, &rbacv1.ClusterRole{}, func(have client.Object) bool {
			return equality.Semantic.DeepEqual(have.(*rbacv1.ClusterRole).Rules, cluster)
		})
		if err != nil {
			return err
		}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, OwnerReferences: []metav1.OwnerReference{roleOwner("ClusterRole", name, uid)}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects:   []rbacv1.Subject{subject},
		}
		if err := r.ensureBinding(ctx, binding, &rbacv1.ClusterRoleBinding{}); err != nil {
			return err
		}
	}
	return nil
}

// ensureRole creates role (a Role or ClusterRole), or updates its rules when same says they
// differ, and returns its UID for the binding's owner reference.
func (r *KubernetesExecutionReconciler) ensureRole(ctx context.Context, role client.Object, have client.Object, same func(client.Object) bool) (types.UID, error) {
	err := r.Get(ctx, client.ObjectKeyFromObject(role), have)
	switch {
	case apierrors.IsNotFound(err):
		if err := r.Create(ctx, role); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", err
		} else if err == nil {
			return role.GetUID(), nil
		}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(role), have); err != nil {
			return "", err
		}
	case err != nil:
		return "", err
	}
	if !same(have) {
		role.SetResourceVersion(have.GetResourceVersion())
		if err := r.Update(ctx, role); err != nil {
			return "", err
		}
	}
	return have.GetUID(), nil
}

// ensureBinding creates binding unless one with the same role and subjects exists.
func (r *KubernetesExecutionReconciler) ensureBinding(ctx context.Context, binding client.Object, have client.Object) error {
	err := r.Get(ctx, client.ObjectKeyFromObject(binding), have)
	if apierrors.IsNotFound(err) {
		err = r.Create(ctx, binding)
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
	}
	return err
}

// ensureServiceAccount creates the template's ServiceAccount in the execution's namespace
// when it is missing, owned by the template so that it goes with it.
func (r *KubernetesExecutionReconciler) ensureServiceAccount(ctx context.Context, obj *v1alpha1.KubernetesExecution, tpl *v1alpha1.ActionTemplate) error {
	sa := &corev1.ServiceAccount{}
	key := types.NamespacedName{Namespace: obj.Namespace, Name: ActionServiceAccountName(tpl.Name)}
	if err := r.Get(ctx, key, sa); !apierrors.IsNotFound(err) {
		return err
	}
	sa = &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
		Namespace: key.Namespace, Name: key.Name,
		Labels:          map[string]string{LabelManagedBy: ManagedByValue, LabelActionType: tpl.Name},
		OwnerReferences: []metav1.OwnerReference{templateOwner(tpl)},
	}}
	if err := r.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating ServiceAccount %s: %w", key, err)
	}
	return nil
}

// revokeGrant deletes the execution's Role and ClusterRole; their bindings, which they own,
// grant nothing from that moment and are removed by the garbage collector. An object the cache
// does not show is looked up on the API server before it is taken as absent, so a revocation
// is never skipped on a stale cache, and nothing is deleted that does not exist.
func (r *KubernetesExecutionReconciler) revokeGrant(ctx context.Context, obj *v1alpha1.KubernetesExecution) error {
	name := grantName(obj)
	ns := obj.Spec.Action.Target.Namespace
	if ns == "" {
		ns = obj.Namespace
	}
	for _, role := range []client.Object{
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}},
	} {
		key := client.ObjectKeyFromObject(role)
		err := r.Get(ctx, key, role)
		if apierrors.IsNotFound(err) {
			err = r.APIReader.Get(ctx, key, role)
		}
		if apierrors.IsNotFound(err) {
			continue
		}
		if err == nil {
			err = r.Delete(ctx, role, client.PropagationPolicy(metav1.DeletePropagationBackground))
		}
		if client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("revoking %T %s: %w", role, key, err)
		}
	}
	return nil
}

// splitByScope separates rules on namespaced resources from rules on cluster-scoped ones.
// Resources the API server does not know are treated as namespaced: granted in one namespace,
// never cluster-wide.
func (r *KubernetesExecutionReconciler) splitByScope(rules []rbacv1.PolicyRule) (namespaced, cluster []rbacv1.PolicyRule) {
	for _, rule := range rules {
		var ns, cl []string
		for _, res := range rule.Resources {
			base, _, _ := strings.Cut(res, "/")
			if r.clusterScoped(rule.APIGroups, base) {
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

func (r *KubernetesExecutionReconciler) clusterScoped(groups []string, resource string) bool {
	for _, g := range groups {
		gvk, err := r.RESTMapper().KindFor(schema.GroupVersionResource{Group: g, Resource: resource})
		if err != nil {
			continue
		}
		m, err := r.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
		if err == nil && m.Scope.Name() == meta.RESTScopeNameRoot {
			return true
		}
	}
	return false
}

// templateOwner makes the template the owner of what it needs, so that the garbage collector
// removes it with the template. Not blocking: deleting a template never waits on them.
func templateOwner(tpl *v1alpha1.ActionTemplate) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: v1alpha1.GroupVersion.String(), Kind: "ActionTemplate", Name: tpl.Name, UID: tpl.UID,
	}
}

func roleOwner(kind, name string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: kind, Name: name, UID: uid, Controller: ptr.To(true)}
}
