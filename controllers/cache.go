package controllers

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// CacheOptions limits the manager's cache of Jobs, pods, ServiceAccounts and RBAC objects to the
// ones the executor created, so its memory does not grow with the cluster's other workloads,
// and its cache of ConfigMaps to the predefined actions' ConfigMaps in namespace, the manager's
// own: no ConfigMap anywhere else is ever read. namespace must not be empty (Setup refuses an
// empty Config.Namespace): for the cache, empty means every namespace.
func CacheOptions(namespace string) cache.Options {
	managed := labels.SelectorFromSet(labels.Set{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue})
	hasAction, err := labels.NewRequirement(v1alpha1.LabelPredefinedAction, selection.Exists, nil)
	if err != nil {
		panic(err) // the key is a valid constant
	}
	predefined := labels.NewSelector().Add(*hasAction)
	// ClusterRoles: the executor's own and the ceiling, which the chart or an administrator
	// creates; all are part of the executor.
	partOf := labels.SelectorFromSet(labels.Set{v1alpha1.LabelPartOf: v1alpha1.PartOfValue})
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&batchv1.Job{}:               {Label: managed},
		&corev1.Pod{}:                {Label: managed},
		&corev1.ServiceAccount{}:     {Label: managed},
		&rbacv1.Role{}:               {Label: managed},
		&rbacv1.RoleBinding{}:        {Label: managed},
		&rbacv1.ClusterRole{}:        {Label: partOf},
		&rbacv1.ClusterRoleBinding{}: {Label: managed},
		&corev1.ConfigMap{}: {
			Namespaces: map[string]cache.Config{namespace: {}},
			Label:      predefined,
		},
	}}
}
