package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubernaut/kubernaut-executor/actions/sdk"
)

// revisionAnnotation is where the Deployment controller records a ReplicaSet's revision.
const revisionAnnotation = "deployment.kubernetes.io/revision"

// rollbackParams are rollback-deployment's parameters.
type rollbackParams struct {
	// ToRevision is the revision to go back to; 0 means the one before the current.
	ToRevision int64 `json:"toRevision"`
}

// rollbackDeployment puts a Deployment's pod template back to an earlier revision, as
// `kubectl rollout undo` does: the template of the ReplicaSet with that revision, without its
// pod-template-hash label. Idempotent: a Deployment already at that template is left alone.
func rollbackDeployment(ctx context.Context, req *sdk.Request) sdk.Result {
	var p rollbackParams
	cs, err := prepare(req, &p, "Deployment")
	if err != nil {
		return sdk.Failed(err, nil)
	}
	deployments := cs.AppsV1().Deployments(req.Namespace)
	d, err := deployments.Get(ctx, req.Name, metav1.GetOptions{})
	if err != nil {
		return sdk.Failed(err, nil)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return sdk.Failed(err, nil)
	}
	rsList, err := cs.AppsV1().ReplicaSets(req.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return sdk.Failed(err, nil)
	}
	revisions := map[int64]*appsv1.ReplicaSet{}
	var numbers []int64
	for i := range rsList.Items {
		rs := &rsList.Items[i]
		if !metav1.IsControlledBy(rs, d) {
			continue
		}
		n, err := strconv.ParseInt(rs.Annotations[revisionAnnotation], 10, 64)
		if err != nil {
			continue
		}
		revisions[n] = rs
		numbers = append(numbers, n)
	}
	sort.Slice(numbers, func(i, j int) bool { return numbers[i] > numbers[j] })
	current, _ := strconv.ParseInt(d.Annotations[revisionAnnotation], 10, 64)
	target := p.ToRevision
	if target == 0 {
		for _, n := range numbers {
			if n < current {
				target = n
				break
			}
		}
		if target == 0 {
			return sdk.Failed(sdk.BadInput("deployment %s/%s has no revision before %d to roll back to", req.Namespace, req.Name, current), nil)
		}
	}
	rs, ok := revisions[target]
	if !ok {
		return sdk.Failed(sdk.BadInput("deployment %s/%s has no revision %d (revisions: %v)", req.Namespace, req.Name, target, numbers), nil)
	}
	want := *rs.Spec.Template.DeepCopy()
	delete(want.Labels, appsv1.DefaultDeploymentUniqueLabelKey)

	c := sdk.Change{
		Before: map[string]any{"revision": current, "images": images(d.Spec.Template)},
		After:  map[string]any{"revision": target, "images": images(want)},
		DryRun: req.DryRun,
	}
	if equality.Semantic.DeepEqual(d.Spec.Template, want) {
		return sdk.Succeeded(fmt.Sprintf("deployment %s/%s already runs the template of revision %d", req.Namespace, req.Name, target), c)
	}
	patch, err := json.Marshal([]map[string]any{
		{"op": "test", "path": "/metadata/resourceVersion", "value": d.ResourceVersion},
		{"op": "replace", "path": "/spec/template", "value": want},
	})
	if err != nil {
		return sdk.Failed(err, c)
	}
	if _, err := deployments.Patch(ctx, req.Name, types.JSONPatchType, patch, metav1.PatchOptions{DryRun: req.DryRunOption()}); err != nil {
		return sdk.Failed(err, c)
	}
	c.Changed = true
	return sdk.Succeeded(fmt.Sprintf("%s deployment %s/%s from revision %d to the template of revision %d",
		req.Verb("rolled back", "would roll back"), req.Namespace, req.Name, current, target), c)
}

func images(t corev1.PodTemplateSpec) []string {
	var out []string
	for _, c := range t.Spec.Containers {
		out = append(out, c.Image)
	}
	return out
}
