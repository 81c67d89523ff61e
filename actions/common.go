package main

import (
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubernaut/kubernaut-executor/actions/internal/result"
	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// dryRun returns the API's dry-run option when the execution asks for one: every write an
// action makes goes through it, so a dry run is the server's own verdict on the change.
func (e Env) dryRun() []string {
	if e.DryRun {
		return []string{metav1.DryRunAll}
	}
	return nil
}

// requireTarget fails unless the target names an object of one of kinds.
func (e Env) requireTarget(kinds ...string) error {
	if e.Name == "" {
		return fmt.Errorf("%s is empty", v1alpha1.EnvTargetName)
	}
	for _, k := range kinds {
		if e.Kind == k {
			return nil
		}
	}
	return fmt.Errorf("%s %q is not one of %v", v1alpha1.EnvTargetKind, e.Kind, kinds)
}

// prepare reads the action's parameters into params (nil for none), checks the target's kind,
// and returns a client acting as the action's own identity.
func (e Env) prepare(params any, kinds ...string) (kubernetes.Interface, error) {
	if params == nil {
		params = &struct{}{}
	}
	if err := e.decode(params); err != nil {
		return nil, badInput("%v", err)
	}
	if err := e.requireTarget(kinds...); err != nil {
		return nil, badInput("%v", err)
	}
	cs, _, err := clients()
	return cs, err
}

// succeeded is the result and exit code of an action that did what it was asked: its output
// and data.
func succeeded(output string, data any) (v1alpha1.ActionResult, int) {
	return result.WithData(v1alpha1.ActionResult{Success: ptrTo(true), Output: output}, data), v1alpha1.ExitSucceeded
}

// failed is the result of an action that failed, why, and its data, with exit code code:
// v1alpha1.ExitRetryable when a retry may help, v1alpha1.ExitFinal when it cannot.
func failed(code int, why string, data any) (v1alpha1.ActionResult, int) {
	return result.WithData(v1alpha1.ActionResult{Success: ptrTo(false), Error: why}, data), code
}

// fail turns an error into a result and exit code: failures a retry cannot fix (the object is
// gone, the request is invalid or forbidden) exit v1alpha1.ExitFinal; the rest (conflicts,
// refusals by a disruption budget, timeouts) v1alpha1.ExitRetryable.
func fail(err error, data any) (v1alpha1.ActionResult, int) {
	code := v1alpha1.ExitRetryable
	switch {
	case apierrors.IsNotFound(err), apierrors.IsInvalid(err), apierrors.IsForbidden(err),
		apierrors.IsBadRequest(err), apierrors.IsMethodNotSupported(err), errors.Is(err, errBadInput):
		code = v1alpha1.ExitFinal
	}
	return failed(code, err.Error(), data)
}

// errBadInput marks errors in the action's input.
var errBadInput = errors.New("bad input")

func badInput(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadInput, fmt.Sprintf(format, args...))
}

// verb describes a change for output, honest about dry runs.
func (e Env) verb(done, would string) string {
	if e.DryRun {
		return would
	}
	return done
}

// change is the before/after record every action reports in data.
type change struct {
	Before any  `json:"before"`
	After  any  `json:"after"`
	DryRun bool `json:"dryRun"`
	// Changed is false when the target already was as asked and nothing was written.
	Changed bool `json:"changed"`
}
