package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/internal/manager"
)

// cleanupTimeout bounds the wait for kube-controller-manager to aggregate the ceiling again.
const cleanupTimeout = 2 * time.Minute

// cleanupCeiling runs before a Helm release is deleted (the chart's pre-delete hook). It deletes
// the release's predefined actions: their ConfigMaps in namespace first, so that the running
// manager does not create their templates again, then the ActionTemplates made from them (the
// manager would delete them too, but it may be gone before it gets to). Then it deletes the
// release's ceiling fragments and waits until the aggregated ceiling no longer holds their rules.
func cleanupCeiling(ctx context.Context, release, namespace, ceiling string) error {
	scheme, err := manager.Scheme()
	if err != nil {
		return err
	}
	c, err := client.New(ctrl.GetConfigOrDie(), client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	log := ctrl.Log.WithName("cleanup")
	if err := deletePredefinedActions(ctx, c, release, namespace); err != nil {
		return err
	}
	ours := client.MatchingLabels{v1alpha1.LabelAggregateToCeiling: "true", v1alpha1.LabelInstance: release}
	if err := c.DeleteAllOf(ctx, &rbacv1.ClusterRole{}, ours); err != nil {
		return fmt.Errorf("deleting the ceiling fragments: %w", err)
	}
	// Helm deletes the ceiling right after this hook. If kube-controller-manager's aggregation
	// controller still had the deletion of one of the release's fragments to process, it would
	// then write the ceiling back (it applies the aggregated rules, which creates the object),
	// holding rules of fragments that no longer exist. So wait until it has processed them: until
	// every rule of the ceiling is held by a fragment that remains. Fragments an administrator
	// added outside the release remain, and the ceiling keeps their rules; waiting for an empty
	// ceiling would wait for ever.
	return wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, cleanupTimeout, true, func(ctx context.Context) (bool, error) {
		role := &rbacv1.ClusterRole{}
		if err := c.Get(ctx, client.ObjectKey{Name: ceiling}, role); apierrors.IsNotFound(err) {
			return true, nil
		} else if err != nil {
			return false, err
		}
		if role.AggregationRule == nil {
			return true, nil
		}
		held, err := remainingRules(ctx, c, role.AggregationRule, release)
		if err != nil {
			return false, err
		}
		for _, rule := range role.Rules {
			if !slices.ContainsFunc(held, func(h rbacv1.PolicyRule) bool { return equality.Semantic.DeepEqual(h, rule) }) {
				log.V(1).Info("waiting for the ceiling's aggregation", "ceiling", ceiling, "rule", rule.String())
				return false, nil
			}
		}
		return true, nil
	})
}

// deletePredefinedActions deletes the release's predefined actions' ConfigMaps in namespace and
// the ActionTemplates the manager created from ConfigMaps of namespace that no longer exist: the
// release's, and those of an earlier try of this hook.
func deletePredefinedActions(ctx context.Context, c client.Client, release, namespace string) error {
	cms := &corev1.ConfigMapList{}
	if err := c.List(ctx, cms, client.InNamespace(namespace), client.HasLabels{v1alpha1.LabelPredefinedAction},
		client.MatchingLabels{v1alpha1.LabelInstance: release}); err != nil {
		return fmt.Errorf("listing the predefined actions' ConfigMaps: %w", err)
	}
	for i := range cms.Items {
		if err := c.Delete(ctx, &cms.Items[i]); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting ConfigMap %s: %w", controllers.PredefinedSource(&cms.Items[i]), err)
		}
	}
	templates := &v1alpha1.ActionTemplateList{}
	if err := c.List(ctx, templates, client.HasLabels{v1alpha1.LabelPredefinedAction}); err != nil {
		if meta.IsNoMatchError(err) {
			return nil // no ActionTemplate CRD, so no template
		}
		return fmt.Errorf("listing the predefined ActionTemplates: %w", err)
	}
	// The ConfigMaps that remain in namespace: another release's, whose templates stay.
	remaining := &corev1.ConfigMapList{}
	if err := c.List(ctx, remaining, client.InNamespace(namespace), client.HasLabels{v1alpha1.LabelPredefinedAction}); err != nil {
		return fmt.Errorf("listing the predefined actions' ConfigMaps: %w", err)
	}
	keep := map[string]bool{}
	for i := range remaining.Items {
		keep[controllers.PredefinedSource(&remaining.Items[i])] = true
	}
	for i := range templates.Items {
		tpl := &templates.Items[i]
		source := tpl.Annotations[v1alpha1.AnnotationPredefinedSource]
		if !strings.HasPrefix(source, namespace+"/") || keep[source] {
			continue
		}
		pre := client.Preconditions{UID: &tpl.UID}
		if err := c.Delete(ctx, tpl, pre); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting ActionTemplate %s: %w", tpl.Name, err)
		}
	}
	return nil
}

// remainingRules returns the rules of the ClusterRoles that agg selects, other than the
// release's own: what the ceiling holds once their deletion is aggregated.
func remainingRules(ctx context.Context, c client.Client, agg *rbacv1.AggregationRule, release string) ([]rbacv1.PolicyRule, error) {
	var rules []rbacv1.PolicyRule
	for _, sel := range agg.ClusterRoleSelectors {
		selector, err := metav1.LabelSelectorAsSelector(&sel)
		if err != nil {
			return nil, err
		}
		list := &rbacv1.ClusterRoleList{}
		if err := c.List(ctx, list, client.MatchingLabelsSelector{Selector: selector}); err != nil {
			return nil, fmt.Errorf("listing the ceiling's fragments: %w", err)
		}
		for _, role := range list.Items {
			if role.Labels[v1alpha1.LabelInstance] == release || !role.DeletionTimestamp.IsZero() {
				continue
			}
			rules = append(rules, role.Rules...)
		}
	}
	return rules, nil
}
