package main

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubernaut/kubernaut-executor/actions/sdk"
)

// cordonParams are cordon-node's parameters.
type cordonParams struct {
	// Uncordon makes the node schedulable again.
	Uncordon bool `json:"uncordon"`
}

// cordonNode marks a node unschedulable (or schedulable again with uncordon). Idempotent.
func cordonNode(ctx context.Context, req *sdk.Request) sdk.Result {
	var p cordonParams
	cs, err := prepare(req, &p, "Node")
	if err != nil {
		return sdk.Failed(err, nil)
	}
	c, err := setUnschedulable(ctx, cs, req, !p.Uncordon)
	if err != nil {
		return sdk.Failed(err, c)
	}
	word := map[bool]string{true: "cordoned", false: "uncordoned"}[!p.Uncordon]
	out := fmt.Sprintf("node %s already %s", req.Name, word)
	if c.Changed {
		out = fmt.Sprintf("%s node %s", req.Verb(word, "would have "+word), req.Name)
	}
	return sdk.Succeeded(out, c)
}

// setUnschedulable patches a node's spec.unschedulable unless it already has the value.
func setUnschedulable(ctx context.Context, cs kubernetes.Interface, req *sdk.Request, want bool) (sdk.Change, error) {
	node, err := cs.CoreV1().Nodes().Get(ctx, req.Name, metav1.GetOptions{})
	if err != nil {
		return sdk.Change{}, err
	}
	c := sdk.Change{Before: map[string]bool{"unschedulable": node.Spec.Unschedulable}, After: map[string]bool{"unschedulable": want}, DryRun: req.DryRun}
	if node.Spec.Unschedulable == want {
		return c, nil
	}
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, want)
	var updated *corev1.Node
	updated, err = cs.CoreV1().Nodes().Patch(ctx, req.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{DryRun: req.DryRunOption()})
	if err != nil {
		return c, err
	}
	c.After, c.Changed = map[string]bool{"unschedulable": updated.Spec.Unschedulable}, true
	return c, nil
}
