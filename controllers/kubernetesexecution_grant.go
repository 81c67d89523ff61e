package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/grants"
)

// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings;clusterrolebindings,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=kubernetesexecution.kubernaut.io,resources=kubernetesexecutions,verbs=get;list;watch;patch
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

// grantLabels mark every object of an execution's grant, so that the sweep finds the ones whose
// execution is gone.
func grantLabels(obj *v1alpha1.KubernetesExecution) map[string]string {
	return map[string]string{
		v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelPartOf: v1alpha1.PartOfValue, v1alpha1.LabelActionType: obj.Spec.Action.Type,
		v1alpha1.LabelExecution: LabelValue(obj.Name), v1alpha1.LabelExecutionNamespace: obj.Namespace, v1alpha1.LabelExecutionUID: string(obj.UID),
	}
}

// reconcileGrant creates the execution's own ServiceAccount and gives it the grant, for the
// execution's lifetime: a Role and RoleBinding for the namespaced rules, a ClusterRole and
// ClusterRoleBinding for the cluster-wide ones. The API server refuses any rule the manager
// does not hold itself (the ceiling).
func (w *workCluster) reconcileGrant(ctx context.Context, obj *v1alpha1.KubernetesExecution, grant grants.Grant) error {
	if err := w.ensureServiceAccount(ctx, obj); err != nil {
		return err
	}
	name := grantName(obj)
	subject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: obj.Namespace, Name: ExecutionServiceAccountName(obj.Name)}
	labels := grantLabels(obj)

	if len(grant.Namespaced) > 0 {
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: grant.Namespace, Name: name, Labels: labels}, Rules: grant.Namespaced}
		if grant.Namespace == obj.Namespace {
			// The garbage collector's backstop; other namespaces are left to the sweep.
			role.OwnerReferences = []metav1.OwnerReference{executionOwner(obj)}
		}
		uid, err := w.ensureRole(ctx, role, &rbacv1.Role{}, func(have client.Object) bool {
			return equality.Semantic.DeepEqual(have.(*rbacv1.Role).Rules, grant.Namespaced)
		})
		if err != nil {
			return err
		}
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: grant.Namespace, Name: name, Labels: labels, OwnerReferences: []metav1.OwnerReference{roleOwner("Role", name, uid)}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects:   []rbacv1.Subject{subject},
		}
		if err := w.ensureBinding(ctx, binding, &rbacv1.RoleBinding{}); err != nil {
			return err
		}
	}
	if len(grant.Cluster) > 0 {
		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Rules: grant.Cluster}
		uid, err := w.ensureRole(ctx, role, &rbacv1.ClusterRole{}, func(have client.Object) bool {
			return equality.Semantic.DeepEqual(have.(*rbacv1.ClusterRole).Rules, grant.Cluster)
		})
		if err != nil {
			return err
		}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, OwnerReferences: []metav1.OwnerReference{roleOwner("ClusterRole", name, uid)}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects:   []rbacv1.Subject{subject},
		}
		if err := w.ensureBinding(ctx, binding, &rbacv1.ClusterRoleBinding{}); err != nil {
			return err
		}
	}
	return nil
}

// ensureRole creates role (a Role or ClusterRole) and returns its UID for the binding's owner
// reference. A role of that name that belongs to another execution, or holds other rules, is an
// error, never taken over or rewritten: an execution's grant does not change while it lives
// (its template's generation is pinned at admission).
func (w *workCluster) ensureRole(ctx context.Context, role client.Object, have client.Object, same func(client.Object) bool) (types.UID, error) {
	err := w.Get(ctx, client.ObjectKeyFromObject(role), have)
	switch {
	case apierrors.IsNotFound(err):
		if err := w.Create(ctx, role); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", err
		} else if err == nil {
			return role.GetUID(), nil
		}
		if err := w.APIReader.Get(ctx, client.ObjectKeyFromObject(role), have); err != nil {
			return "", err
		}
	case err != nil:
		return "", err
	}
	if have.GetLabels()[v1alpha1.LabelExecutionUID] != role.GetLabels()[v1alpha1.LabelExecutionUID] || !same(have) {
		return "", fmt.Errorf("%T %s exists and is not this execution's grant", have, client.ObjectKeyFromObject(role))
	}
	return have.GetUID(), nil
}

// ensureBinding creates binding unless one with the same role and subjects exists.
func (w *workCluster) ensureBinding(ctx context.Context, binding client.Object, have client.Object) error {
	err := w.Get(ctx, client.ObjectKeyFromObject(binding), have)
	if apierrors.IsNotFound(err) {
		err = w.Create(ctx, binding)
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
	}
	return err
}

// ensureServiceAccount creates the execution's own ServiceAccount, owned by the execution. No
// two executions share one, and it is deleted at revocation, so every token minted for it stops
// working when the execution ends.
func (w *workCluster) ensureServiceAccount(ctx context.Context, obj *v1alpha1.KubernetesExecution) error {
	key := types.NamespacedName{Namespace: obj.Namespace, Name: ExecutionServiceAccountName(obj.Name)}
	sa := &corev1.ServiceAccount{}
	err := w.Get(ctx, key, sa)
	if apierrors.IsNotFound(err) {
		sa = &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
			Namespace: key.Namespace, Name: key.Name, Labels: grantLabels(obj),
		}}
		if !w.remote() {
			sa.OwnerReferences = []metav1.OwnerReference{executionOwner(obj)}
		}
		err = w.Create(ctx, sa)
		if apierrors.IsAlreadyExists(err) {
			err = w.APIReader.Get(ctx, key, sa)
		}
	}
	if err != nil {
		return fmt.Errorf("creating ServiceAccount %s: %w", key, err)
	}
	if sa.Labels[v1alpha1.LabelExecutionUID] != string(obj.UID) {
		// An earlier execution of the same name whose revocation is still under way.
		return fmt.Errorf("ServiceAccount %s belongs to another execution; waiting until it is removed", key)
	}
	return nil
}

// revokeGrant deletes the execution's Roles, ClusterRole and ServiceAccount; the bindings, which
// the roles own, grant nothing from that moment and are removed by the garbage collector, and
// tokens of the deleted ServiceAccount are refused. An object the cache does not show is looked
// up on the API server before it is taken as absent, so a revocation is never skipped on a stale
// cache, and nothing is deleted that does not exist or is not this execution's.
func (r *KubernetesExecutionReconciler) revokeGrant(ctx context.Context, obj *v1alpha1.KubernetesExecution, w *workCluster) error {
	name := grantName(obj)
	// The Role is in the target's namespace; the execution's own for a cluster-scoped target,
	// which admission requires to name no namespace (see grants.Compute).
	roleNamespace := obj.Spec.Action.Target.Namespace
	if roleNamespace == "" {
		roleNamespace = obj.Namespace
	}
	objs := []client.Object{
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: roleNamespace, Name: name}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: obj.Namespace, Name: ExecutionServiceAccountName(obj.Name)}},
	}
	for _, o := range objs {
		if err := w.deleteOwned(ctx, obj, o); err != nil {
			return fmt.Errorf("revoking %T %s: %w", o, client.ObjectKeyFromObject(o), err)
		}
	}
	return nil
}

// deleteOwned deletes o if it exists and carries the execution's UID.
func (w *workCluster) deleteOwned(ctx context.Context, obj *v1alpha1.KubernetesExecution, o client.Object) error {
	key := client.ObjectKeyFromObject(o)
	err := w.Get(ctx, key, o)
	if apierrors.IsNotFound(err) {
		err = w.APIReader.Get(ctx, key, o)
	}
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if o.GetLabels()[v1alpha1.LabelExecutionUID] != string(obj.UID) || !o.GetDeletionTimestamp().IsZero() {
		return nil
	}
	err = w.Delete(ctx, o, client.PropagationPolicy(metav1.DeletePropagationBackground), client.Preconditions{UID: ptr.To(o.GetUID())})
	return client.IgnoreNotFound(err)
}

// executionOwner makes the execution the owner of an object in its namespace, so that the
// garbage collector removes it with the execution even if the finalizer was forced off.
func executionOwner(obj *v1alpha1.KubernetesExecution) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: v1alpha1.GroupVersion.String(), Kind: "KubernetesExecution", Name: obj.Name, UID: obj.UID,
	}
}

func roleOwner(kind, name string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: kind, Name: name, UID: uid, Controller: ptr.To(true)}
}
