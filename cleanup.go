package main

import (
	"context"
	"fmt"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/controllers"
)

// cleanupCeiling runs before a Helm release is deleted: it deletes the release's ceiling
// fragments (and so, through the garbage collector, the templates they carry) and waits until
// kube-controller-manager has emptied the aggregated ceiling. Deleted together with the ceiling,
// the fragments' last aggregation could write the ceiling back after Helm removed it.
func cleanupCeiling(ctx context.Context, release, ceiling string) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	c, err := client.New(ctrl.GetConfigOrDie(), client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	sel := client.MatchingLabels{controllers.LabelAggregateToCeiling: "true", "app.kubernetes.io/instance": release}
	if err := c.DeleteAllOf(ctx, &rbacv1.ClusterRole{}, sel); err != nil {
		return fmt.Errorf("deleting the ceiling fragments: %w", err)
	}
	return wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		role := &rbacv1.ClusterRole{}
		if err := c.Get(ctx, client.ObjectKey{Name: ceiling}, role); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return len(role.Rules) == 0, nil
	})
}
