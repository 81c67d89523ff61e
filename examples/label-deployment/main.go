// Command label-deployment is a custom action written with the action SDK: it sets, or removes,
// one label on a Deployment and reports the label's value before and after. Idempotent: a
// Deployment that already is as asked is left alone.
package main

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubernaut/kubernaut-executor/actions/sdk"
)

// params are the action's parameters; the template's schema has already checked them.
type params struct {
	Key   string  `json:"key"`
	Value *string `json:"value"`
	// Remove removes the label instead of setting it.
	Remove bool `json:"remove"`
}

func main() { sdk.Main(labelDeployment) }

func labelDeployment(ctx context.Context, req *sdk.Request) sdk.Result {
	var p params
	if err := req.Decode(&p); err != nil {
		return sdk.Failed(err, nil)
	}
	if err := req.RequireKind("Deployment"); err != nil {
		return sdk.Failed(err, nil)
	}
	if p.Key == "" || p.Remove == (p.Value != nil) {
		return sdk.Failed(sdk.BadInput("set key and either value or remove: true"), nil)
	}
	cs, err := req.Clientset()
	if err != nil {
		return sdk.Failed(err, nil)
	}
	deployments := cs.AppsV1().Deployments(req.Namespace)
	d, err := deployments.Get(ctx, req.Name, metav1.GetOptions{})
	if err != nil {
		return sdk.Failed(err, nil)
	}
	before := label(d.Labels, p.Key)
	// After is what the Deployment holds: before, until a patch says otherwise.
	change := sdk.Change{Before: before, After: before, DryRun: req.DryRun}
	if same(before, p.Value) {
		return sdk.Succeeded(fmt.Sprintf("%s already %s", req, state(p)), change)
	}
	// A merge patch of the one label (null removes it): nothing else on the Deployment changes,
	// and running it twice does what running it once does.
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]*string{p.Key: p.Value}}})
	if err != nil {
		return sdk.Failed(err, nil)
	}
	updated, err := deployments.Patch(ctx, req.Name, types.MergePatchType, patch, metav1.PatchOptions{DryRun: req.DryRunOption()})
	if err != nil {
		return sdk.Failed(err, change)
	}
	change.After, change.Changed = label(updated.Labels, p.Key), true
	what := req.Verb("set", "would set") + " label " + p.Key + "=" + deref(p.Value) + " on"
	if p.Remove {
		what = req.Verb("removed", "would remove") + " label " + p.Key + " from"
	}
	return sdk.Succeeded(fmt.Sprintf("%s %s", what, req), change)
}

// label is the label's value, or nil when the label is absent.
func label(labels map[string]string, key string) *string {
	if v, ok := labels[key]; ok {
		return &v
	}
	return nil
}

// same reports whether two optional values are equal.
func same(a, b *string) bool { return a == b || (a != nil && b != nil && *a == *b) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// state is what the Deployment's labels should be, for messages.
func state(p params) string {
	if p.Remove {
		return "has no label " + p.Key
	}
	return fmt.Sprintf("has label %s=%s", p.Key, deref(p.Value))
}
