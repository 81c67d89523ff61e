package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// restartedAtAnnotation is the pod template annotation `kubectl rollout restart` sets.
const restartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// restartDeployment rolls a Deployment's pods, as `kubectl rollout restart` does, by stamping
// its pod template with the time.
func restartDeployment(ctx context.Context, env Env) (v1alpha1.ActionResult, int) {
	cs, err := env.prepare(nil, "Deployment")
	if err != nil {
		return fail(err, nil)
	}
	deployments := cs.AppsV1().Deployments(env.Namespace)
	d, err := deployments.Get(ctx, env.Name, metav1.GetOptions{})
	if err != nil {
		return fail(err, nil)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	c := change{
		Before: map[string]any{"restartedAt": d.Spec.Template.Annotations[restartedAtAnnotation], "generation": d.Generation},
		DryRun: env.DryRun,
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{restartedAtAnnotation: now}}}}})
	updated, err := deployments.Patch(ctx, env.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{DryRun: env.dryRun()})
	if err != nil {
		return fail(err, c)
	}
	c.After = map[string]any{"restartedAt": now, "generation": updated.Generation}
	c.Changed = true
	return succeeded(fmt.Sprintf("%s deployment %s/%s", env.verb("restarted", "would restart"), env.Namespace, env.Name), c)
}
