package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/kubernaut/kubernaut-executor/actions/sdk"
	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// mirrorPodAnnotation marks the API server's copy of a static pod, which cannot be evicted.
const mirrorPodAnnotation = "kubernetes.io/config.mirror"

// drainParams are drain-node's parameters.
type drainParams struct {
	// TimeoutSeconds bounds how long evictions refused by disruption budgets are retried.
	TimeoutSeconds int `json:"timeoutSeconds"`
}

// drainNode cordons a node and evicts every evictable pod on it through the Eviction API,
// retrying the ones a PodDisruptionBudget refuses until the timeout. DaemonSet pods, mirror pods
// and finished pods are left alone, as `kubectl drain --ignore-daemonsets` does.
func drainNode(ctx context.Context, req *sdk.Request) sdk.Result {
	p := drainParams{TimeoutSeconds: 120}
	cs, err := prepare(req, &p, "Node")
	if err != nil {
		return sdk.Failed(err, nil)
	}
	cordon, err := setUnschedulable(ctx, cs, req, true)
	if err != nil {
		return sdk.Failed(err, cordon)
	}
	list, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", req.Name).String()})
	if err != nil {
		return sdk.Failed(err, cordon)
	}
	var pending, skipped []string
	pods := map[string]corev1.Pod{}
	for _, pod := range list.Items {
		key := pod.Namespace + "/" + pod.Name
		switch {
		case pod.Annotations[mirrorPodAnnotation] != "":
			skipped = append(skipped, key+" (mirror pod)")
		case ownedByDaemonSet(pod):
			skipped = append(skipped, key+" (DaemonSet)")
		case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
			skipped = append(skipped, key+" (finished)")
		default:
			pending = append(pending, key)
			pods[key] = pod
		}
	}
	sort.Strings(pending)
	data := map[string]any{
		"cordon": cordon, "skipped": skipped, "dryRun": req.DryRun,
		"before": map[string]any{"pods": pending},
	}
	deadline := time.Now().Add(time.Duration(p.TimeoutSeconds) * time.Second)
	var evicted []string
	var lastErr error
	for len(pending) > 0 {
		var refused []string
		for _, key := range pending {
			pod := pods[key]
			err := evict(ctx, cs, pod.Namespace, pod.Name, req.DryRunOption())
			switch {
			case err == nil, apierrors.IsNotFound(err):
				evicted = append(evicted, key)
			case apierrors.IsTooManyRequests(err) || strings.Contains(err.Error(), "disruption budget"):
				refused, lastErr = append(refused, key), err
			default:
				data["evicted"], data["remaining"] = evicted, pending
				return sdk.Failed(err, data)
			}
		}
		pending = refused
		if len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			pending = append(pending, "(stopped)")
		case <-time.After(2 * time.Second):
		}
	}
	data["evicted"], data["after"] = evicted, map[string]any{"remaining": pending}
	if len(pending) > 0 {
		return sdk.FailedWith(v1alpha1.ExitRetryable, fmt.Sprintf("%d pods could not be evicted in %ds: %v; last refusal: %v", len(pending), p.TimeoutSeconds, pending, lastErr), data)
	}
	return sdk.Succeeded(fmt.Sprintf("%s node %s: %d pods evicted, %d left alone",
		req.Verb("drained", "would drain"), req.Name, len(evicted), len(skipped)), data)
}

func ownedByDaemonSet(pod corev1.Pod) bool {
	ref := metav1.GetControllerOf(&pod)
	return ref != nil && ref.Kind == "DaemonSet"
}
