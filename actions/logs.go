package main

import (
	"context"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// logsParams are collect-logs' parameters.
type logsParams struct {
	Container    string `json:"container"`
	TailLines    *int64 `json:"tailLines"`
	SinceSeconds *int64 `json:"sinceSeconds"`
	Previous     bool   `json:"previous"`
}

// collectLogs returns a container's log in the output, cut to the termination message's limit
// with an explicit marker. It changes nothing.
func collectLogs(ctx context.Context, env Env) (v1alpha1.ActionResult, int) {
	var p logsParams
	cs, err := env.prepare(&p, "Pod")
	if err != nil {
		return fail(err, nil)
	}
	opts := &corev1.PodLogOptions{Container: p.Container, TailLines: p.TailLines, SinceSeconds: p.SinceSeconds, Previous: p.Previous}
	// Ask for no more than fits, with room for the rest of the result.
	opts.LimitBytes = ptrTo(int64(v1alpha1.MaxResultBytes * 4))
	raw, err := cs.CoreV1().Pods(env.Namespace).GetLogs(env.Name, opts).DoRaw(ctx)
	if err != nil {
		return fail(err, nil)
	}
	data := map[string]any{"container": p.Container, "bytes": len(raw), "tailLines": p.TailLines}
	fmt.Fprintf(os.Stderr, "collected %d bytes of logs from pod %s/%s\n", len(raw), env.Namespace, env.Name)
	return succeeded(string(raw), data)
}

func ptrTo[T any](v T) *T { return &v }
