package controllers

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheOptions limits the manager's cache of Jobs, pods, ServiceAccounts and RBAC objects to the
// ones the executor created, so its memory does not grow with the cluster's other workloads.
func CacheOptions() cache.Options {
	managed := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedByValue})
	// ClusterRoles: the executor's own and the ceiling, which the chart or an administrator
	// creates; all are part of the executor.
	partOf := labels.SelectorFromSet(labels.Set{LabelPartOf: PartOfValue})
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&batchv1.Job{}:               {Label: managed},
		&corev1.Pod{}:                {Label: managed},
		&corev1.ServiceAccount{}:     {Label: managed},
		&rbacv1.Role{}:               {Label: managed},
		&rbacv1.RoleBinding{}:        {Label: managed},
		&rbacv1.ClusterRole{}:        {Label: partOf},
		&rbacv1.ClusterRoleBinding{}: {Label: managed},
	}}
}
