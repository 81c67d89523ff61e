package main

import (
	"context"
	"fmt"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// scaleParams are scale-deployment's parameters.
type scaleParams struct {
	Replicas *int32 `json:"replicas"`
}

// scaleDeployment sets a Deployment's replicas through its scale subresource. Idempotent: a
// Deployment already at the count is left alone.
func scaleDeployment(ctx context.Context, env Env) (v1alpha1.ActionResult, int) {
	var p scaleParams
	cs, err := env.prepare(&p, "Deployment")
	if err != nil {
		return fail(err, nil)
	}
	if p.Replicas == nil || *p.Replicas < 0 {
		return fail(badInput("replicas must be set and not negative"), nil)
	}
	deployments := cs.AppsV1().Deployments(env.Namespace)
	scale, err := deployments.GetScale(ctx, env.Name, metav1.GetOptions{})
	if err != nil {
		return fail(err, nil)
	}
	before := scale.Spec.Replicas
	c := change{Before: map[string]int32{"replicas": before}, After: map[string]int32{"replicas": *p.Replicas}, DryRun: env.DryRun}
	if before == *p.Replicas {
		return succeeded(fmt.Sprintf("deployment %s/%s already has %d replicas", env.Namespace, env.Name, before), c)
	}
	next := &autoscalingv1.Scale{ObjectMeta: scale.ObjectMeta, Spec: autoscalingv1.ScaleSpec{Replicas: *p.Replicas}}
	updated, err := deployments.UpdateScale(ctx, env.Name, next, metav1.UpdateOptions{DryRun: env.dryRun()})
	if err != nil {
		return fail(err, c)
	}
	c.After, c.Changed = map[string]int32{"replicas": updated.Spec.Replicas}, true
	return succeeded(fmt.Sprintf("%s deployment %s/%s from %d to %d replicas", env.verb("scaled", "would scale"), env.Namespace, env.Name, before, updated.Spec.Replicas), c)
}
