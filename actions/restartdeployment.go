package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubernaut/kubernaut-executor/actions/sdk"
)

// restartedAtAnnotation is the pod template annotation `kubectl rollout restart` sets.
const restartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// restartDeployment rolls a Deployment's pods, as `kubectl rollout restart` does, by stamping
// its pod template with the time.
func restartDeployment(ctx context.Context, req *sdk.Request) sdk.Result {
	cs, err := prepare(req, nil, "Deployment")
	if err != nil {
		return sdk.Failed(err, nil)
	}
	deployments := cs.AppsV1().Deployments(req.Namespace)
	d, err := deployments.Get(ctx, req.Name, metav1.GetOptions{})
	if err != nil {
		return sdk.Failed(err, nil)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	c := sdk.Change{
		Before: map[string]any{"restartedAt": d.Spec.Template.Annotations[restartedAtAnnotation], "generation": d.Generation},
		DryRun: req.DryRun,
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{restartedAtAnnotation: now}}}}})
	updated, err := deployments.Patch(ctx, req.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{DryRun: req.DryRunOption()})
	if err != nil {
		return sdk.Failed(err, c)
	}
	c.After = map[string]any{"restartedAt": now, "generation": updated.Generation}
	c.Changed = true
	return sdk.Succeeded(fmt.Sprintf("%s deployment %s/%s", req.Verb("restarted", "would restart"), req.Namespace, req.Name), c)
}
