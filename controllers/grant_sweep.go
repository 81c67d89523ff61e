package controllers

import (
	"context"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// DefaultSweepInterval is how often grants whose execution is gone are looked for.
const DefaultSweepInterval = 5 * time.Minute

// GrantSweeper removes the ServiceAccounts, Roles, ClusterRoles and bindings of executions that
// no longer exist, when the manager starts and then periodically. Revocation normally happens
// before an execution's finalizer is released; the sweep covers what that cannot: a finalizer
// forced off, an execution deleted while its finalizer was being added, a namespace deleted with
// everything in it.
type GrantSweeper struct {
	client.Client
	// APIReader confirms with the API server that an execution is gone before its grant is
	// removed, so a grant is never swept because the cache has not seen its execution yet.
	APIReader client.Reader
	// Interval between sweeps.
	Interval time.Duration
	// Target, when set, is a target cluster whose grants and Jobs are swept instead of the
	// executor's own (whose executions are still read through Client and APIReader).
	Target client.Client
}

// NeedLeaderElection makes only the leader sweep.
func (s *GrantSweeper) NeedLeaderElection() bool { return true }

// Start sweeps until ctx ends.
func (s *GrantSweeper) Start(ctx context.Context) error {
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if n, err := s.Sweep(ctx); err != nil {
			log.FromContext(ctx).Error(err, "sweeping orphaned grants")
		} else if n > 0 {
			log.FromContext(ctx).Info("removed the grants of executions that no longer exist", "objects", n)
		}
	}, s.Interval)
	return nil
}

// Sweep deletes every grant object whose execution no longer exists and returns how many it
// deleted.
func (s *GrantSweeper) Sweep(ctx context.Context) (int, error) {
	lists := []client.ObjectList{
		&corev1.ServiceAccountList{}, &rbacv1.RoleList{}, &rbacv1.RoleBindingList{},
		&rbacv1.ClusterRoleList{}, &rbacv1.ClusterRoleBindingList{},
	}
	where := s.Client
	if s.Target != nil {
		where = s.Target
		// No owner reference takes a target cluster's Jobs away with their execution.
		lists = append(lists, &batchv1.JobList{})
	}
	var candidates []client.Object
	for _, list := range lists {
		if err := where.List(ctx, list, client.HasLabels{v1alpha1.LabelExecutionUID}); err != nil {
			return 0, err
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return 0, err
		}
		for _, item := range items {
			candidates = append(candidates, item.(client.Object))
		}
	}
	gone := map[types.UID]bool{}
	deleted := 0
	for _, o := range candidates {
		uid := types.UID(o.GetLabels()[v1alpha1.LabelExecutionUID])
		namespace := o.GetLabels()[v1alpha1.LabelExecutionNamespace]
		if _, known := gone[uid]; !known {
			exists, err := s.executionExists(ctx, namespace, uid)
			if err != nil {
				return deleted, err
			}
			gone[uid] = !exists
		}
		if !gone[uid] || !o.GetDeletionTimestamp().IsZero() {
			continue
		}
		err := where.Delete(ctx, o, client.Preconditions{UID: ptr.To(o.GetUID())}, client.PropagationPolicy(metav1.DeletePropagationBackground))
		if client.IgnoreNotFound(err) != nil {
			return deleted, fmt.Errorf("deleting %T %s: %w", o, client.ObjectKeyFromObject(o), err)
		}
		deleted++
	}
	return deleted, nil
}

// executionExists looks for an execution with uid in namespace: in the cache, through its index
// of executions by UID and without a copy (one sweep may ask about thousands of grants), and,
// when the cache does not show it, on the API server, whose list of the namespace's executions
// is read as metadata only.
func (s *GrantSweeper) executionExists(ctx context.Context, namespace string, uid types.UID) (bool, error) {
	cached := &v1alpha1.KubernetesExecutionList{}
	if err := s.List(ctx, cached, client.InNamespace(namespace), client.MatchingFields{executionUIDIndex: string(uid)}, client.UnsafeDisableDeepCopy); err != nil {
		return false, err
	}
	if len(cached.Items) > 0 {
		return true, nil
	}
	live := &metav1.PartialObjectMetadataList{}
	live.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("KubernetesExecutionList"))
	if err := s.APIReader.List(ctx, live, client.InNamespace(namespace)); err != nil {
		return false, err
	}
	for _, e := range live.Items {
		if e.UID == uid {
			return true, nil
		}
	}
	return false, nil
}

// executionUIDIndex indexes the cached executions by UID, which is what a grant records of its
// execution.
const executionUIDIndex = "metadata.uid"

// indexExecutionUIDs adds executionUIDIndex to the manager's cache.
func indexExecutionUIDs(ctx context.Context, mgr ctrl.Manager) error {
	return mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.KubernetesExecution{}, executionUIDIndex, func(o client.Object) []string {
		return []string{string(o.GetUID())}
	})
}
