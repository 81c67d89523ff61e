package main

import (
	"context"
	"fmt"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubernaut/kubernaut-executor/actions/sdk"
)

// scaleParams are scale-deployment's parameters.
type scaleParams struct {
	Replicas *int32 `json:"replicas"`
}

// scaleDeployment sets a Deployment's replicas through its scale subresource. Idempotent: a
// Deployment already at the count is left alone.
func scaleDeployment(ctx context.Context, req *sdk.Request) sdk.Result {
	var p scaleParams
	cs, err := prepare(req, &p, "Deployment")
	if err != nil {
		return sdk.Failed(err, nil)
	}
	if p.Replicas == nil || *p.Replicas < 0 {
		return sdk.Failed(sdk.BadInput("replicas must be set and not negative"), nil)
	}
	deployments := cs.AppsV1().Deployments(req.Namespace)
	scale, err := deployments.GetScale(ctx, req.Name, metav1.GetOptions{})
	if err != nil {
		return sdk.Failed(err, nil)
	}
	before := scale.Spec.Replicas
	c := sdk.Change{Before: map[string]int32{"replicas": before}, After: map[string]int32{"replicas": *p.Replicas}, DryRun: req.DryRun}
	if before == *p.Replicas {
		return sdk.Succeeded(fmt.Sprintf("deployment %s/%s already has %d replicas", req.Namespace, req.Name, before), c)
	}
	next := &autoscalingv1.Scale{ObjectMeta: scale.ObjectMeta, Spec: autoscalingv1.ScaleSpec{Replicas: *p.Replicas}}
	updated, err := deployments.UpdateScale(ctx, req.Name, next, metav1.UpdateOptions{DryRun: req.DryRunOption()})
	if err != nil {
		return sdk.Failed(err, c)
	}
	c.After, c.Changed = map[string]int32{"replicas": updated.Spec.Replicas}, true
	return sdk.Succeeded(fmt.Sprintf("%s deployment %s/%s from %d to %d replicas", req.Verb("scaled", "would scale"), req.Namespace, req.Name, before, updated.Spec.Replicas), c)
}
