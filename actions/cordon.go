package main

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// cordonParams are cordon-node's parameters.
type cordonParams struct {
	// Uncordon makes the node schedulable again.
	Uncordon bool `json:"uncordon"`
}

// cordonNode marks a node unschedulable (or schedulable again with uncordon). Idempotent.
func cordonNode(ctx context.Context, env Env) (v1alpha1.ActionResult, int) {
	var p cordonParams
	cs, err := env.prepare(&p, "Node")
	if err != nil {
		return fail(err, nil)
	}
	c, err := setUnschedulable(ctx, cs, env, !p.Uncordon)
	if err != nil {
		return fail(err, c)
	}
	word := map[bool]string{true: "cordoned", false: "uncordoned"}[!p.Uncordon]
	out := fmt.Sprintf("node %s already %s", env.Name, word)
	if c.Changed {
		out = fmt.Sprintf("%s node %s", env.verb(word, "would have "+word), env.Name)
	}
	return succeeded(out, c)
}

// setUnschedulable patches a node's spec.unschedulable unless it already has the value.
func setUnschedulable(ctx context.Context, cs kubernetes.Interface, env Env, want bool) (change, error) {
	node, err := cs.CoreV1().Nodes().Get(ctx, env.Name, metav1.GetOptions{})
	if err != nil {
		return change{}, err
	}
	c := change{Before: map[string]bool{"unschedulable": node.Spec.Unschedulable}, After: map[string]bool{"unschedulable": want}, DryRun: env.DryRun}
	if node.Spec.Unschedulable == want {
		return c, nil
	}
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, want)
	var updated *corev1.Node
	updated, err = cs.CoreV1().Nodes().Patch(ctx, env.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{DryRun: env.dryRun()})
	if err != nil {
		return c, err
	}
	c.After, c.Changed = map[string]bool{"unschedulable": updated.Spec.Unschedulable}, true
	return c, nil
}
