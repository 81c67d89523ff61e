package main

import (
	"context"
	"fmt"

	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubernaut/kubernaut-executor/actions/sdk"
)

// restartPod evicts a pod through the Eviction API, so PodDisruptionBudgets are respected; its
// controller replaces it. A refusal by a budget is a retryable failure carrying the API's reason.
func restartPod(ctx context.Context, req *sdk.Request) sdk.Result {
	cs, err := prepare(req, nil, "Pod")
	if err != nil {
		return sdk.Failed(err, nil)
	}
	pod, err := cs.CoreV1().Pods(req.Namespace).Get(ctx, req.Name, metav1.GetOptions{})
	if err != nil {
		return sdk.Failed(err, nil)
	}
	before := map[string]any{"uid": pod.UID, "phase": pod.Status.Phase, "node": pod.Spec.NodeName}
	c := sdk.Change{Before: before, DryRun: req.DryRun}
	if err := evict(ctx, cs, req.Namespace, req.Name, req.DryRunOption()); err != nil {
		c.After = before
		return sdk.Failed(err, c)
	}
	c.After, c.Changed = map[string]any{"evicted": true, "uid": pod.UID}, true
	return sdk.Succeeded(fmt.Sprintf("%s pod %s/%s (uid %s); its controller replaces it", req.Verb("evicted", "would evict"), req.Namespace, req.Name, pod.UID), c)
}

// evict asks the API server to evict one pod. A refusal because of a disruption budget comes
// back as an error that names the budget (HTTP 429).
func evict(ctx context.Context, cs kubernetes.Interface, ns, name string, dryRun []string) error {
	err := cs.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Namespace: ns, Name: name},
		DeleteOptions: &metav1.DeleteOptions{DryRun: dryRun},
	})
	if apierrors.IsTooManyRequests(err) {
		return fmt.Errorf("eviction of pod %s/%s refused by a PodDisruptionBudget: %w", ns, name, err)
	}
	return err
}
