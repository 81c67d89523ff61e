package main

import (
	"context"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubernaut/kubernaut-executor/actions/sdk"
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
func collectLogs(ctx context.Context, req *sdk.Request) sdk.Result {
	var p logsParams
	cs, err := prepare(req, &p, "Pod")
	if err != nil {
		return sdk.Failed(err, nil)
	}
	opts := &corev1.PodLogOptions{Container: p.Container, TailLines: p.TailLines, SinceSeconds: p.SinceSeconds, Previous: p.Previous}
	// Ask for no more than fits, with room for the rest of the result.
	opts.LimitBytes = ptrTo(int64(v1alpha1.MaxResultBytes * 4))
	raw, err := cs.CoreV1().Pods(req.Namespace).GetLogs(req.Name, opts).DoRaw(ctx)
	if err != nil {
		return sdk.Failed(err, nil)
	}
	data := map[string]any{"container": p.Container, "bytes": len(raw), "tailLines": p.TailLines}
	fmt.Fprintf(os.Stderr, "collected %d bytes of logs from pod %s/%s\n", len(raw), req.Namespace, req.Name)
	return sdk.Succeeded(string(raw), data)
}
