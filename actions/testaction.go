package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubernaut/kubernaut-executor/actions/sdk"
	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// testActionParams drive test-action, the action the executor's own tests run.
type testActionParams struct {
	// Output is printed and returned as the result's output.
	Output string `json:"output"`
	// SleepSeconds waits before finishing (a SIGTERM ends the wait).
	SleepSeconds int `json:"sleepSeconds"`
	// FailUntilAttempt fails every attempt numbered below it.
	FailUntilAttempt int `json:"failUntilAttempt"`
	// Fail fails every attempt.
	Fail bool `json:"fail"`
	// ExitCode is the exit code of a failure (default 1).
	ExitCode int `json:"exitCode"`
	// NoResult writes no result, so the executor falls back to the exit code and the log.
	NoResult bool `json:"noResult"`
	// APICalls are made with the action's own identity; each one's HTTP status is reported in
	// data.calls, and any refused call fails the action (exit 2, do not retry).
	APICalls []apiCall `json:"apiCalls"`
}

// apiCall is one request the test action makes. Writes are server-side dry runs.
type apiCall struct {
	Verb      string `json:"verb"`
	Group     string `json:"group"`
	Version   string `json:"version"`
	Resource  string `json:"resource"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// callResult is what became of one apiCall.
type callResult struct {
	Call   string `json:"call"`
	Status int32  `json:"status"`
	Error  string `json:"error,omitempty"`
}

// testAction succeeds, fails, sleeps and prints as its parameters say.
func testAction(ctx context.Context, req *sdk.Request) sdk.Result {
	var p testActionParams
	// Lenient: the suites run it under templates with parameters of their own.
	if err := json.Unmarshal(req.Parameters, &p); err != nil {
		return sdk.FailedWith(v1alpha1.ExitFinal, err.Error(), nil)
	}
	data := map[string]any{"attempt": req.Attempt, "target": req.Namespace + "/" + req.Name, "dryRun": req.DryRun}
	if len(p.APICalls) > 0 {
		calls, refused, err := makeCalls(ctx, req, p.APICalls)
		if err != nil {
			return sdk.FailedWith(v1alpha1.ExitRetryable, err.Error(), nil)
		}
		data["calls"] = calls
		if len(refused) > 0 {
			return sdk.FailedWith(v1alpha1.ExitFinal, strings.Join(refused, "; "), data)
		}
	}
	if p.SleepSeconds > 0 {
		select {
		case <-time.After(time.Duration(p.SleepSeconds) * time.Second):
		case <-ctx.Done():
			return sdk.FailedWith(v1alpha1.ExitRetryable, "stopped by a signal while sleeping", nil)
		}
	}
	res := sdk.Succeeded(p.Output, data)
	if p.Fail || req.Attempt < p.FailUntilAttempt {
		res = sdk.FailedWith(p.ExitCode, fmt.Sprintf("test-action failed on attempt %d as asked", req.Attempt), data)
		res.Output = p.Output
	}
	if p.NoResult {
		// An image that keeps no contract: it prints, writes nothing and exits.
		fmt.Println(p.Output)
		os.Exit(res.ExitCode)
	}
	return res
}

// makeCalls performs each call and reports its HTTP status; refused lists the failures.
func makeCalls(ctx context.Context, req *sdk.Request, calls []apiCall) (out []callResult, refused []string, err error) {
	dyn, err := req.Dynamic()
	if err != nil {
		return nil, nil, err
	}
	for _, c := range calls {
		gvr := schema.GroupVersionResource{Group: c.Group, Version: c.Version, Resource: c.Resource}
		if gvr.Version == "" {
			gvr.Version = "v1"
		}
		ri := dyn.Resource(gvr).Namespace(c.Namespace)
		dry := []string{metav1.DryRunAll}
		var callErr error
		switch c.Verb {
		case "get":
			_, callErr = ri.Get(ctx, c.Name, metav1.GetOptions{})
		case "list":
			_, callErr = ri.List(ctx, metav1.ListOptions{})
		case "patch":
			_, callErr = ri.Patch(ctx, c.Name, types.MergePatchType, []byte(`{}`), metav1.PatchOptions{DryRun: dry})
		case "delete":
			callErr = ri.Delete(ctx, c.Name, metav1.DeleteOptions{DryRun: dry})
		default:
			callErr = fmt.Errorf("verb %q is not supported by test-action", c.Verb)
		}
		r := callResult{Call: fmt.Sprintf("%s %s %s/%s", c.Verb, gvr.GroupResource(), c.Namespace, c.Name), Status: 200}
		if callErr != nil {
			r.Error = callErr.Error()
			var status apierrors.APIStatus
			if errors.As(callErr, &status) {
				r.Status = status.Status().Code
			} else {
				r.Status = 0
			}
			refused = append(refused, fmt.Sprintf("%s: %d %s", r.Call, r.Status, callErr))
		}
		out = append(out, r)
	}
	return out, refused, nil
}
