package sdk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// Func is an action: it does what the request asks and says how it went. It should return when
// ctx ends (the pod is being stopped).
type Func func(ctx context.Context, req *Request) Result

// Result is how an action went: what Main writes to the termination message and the code it
// exits with. Build one with Succeeded, Failed or FailedWith.
type Result struct {
	// Success is false when the action failed.
	Success bool
	// Output says what the action did, for people.
	Output string
	// Error says why it failed.
	Error string
	// Data is structured detail, encoded as JSON (for example a Change); keep it to a few
	// facts: the whole result must fit in 4 KiB, and data that does not is dropped.
	Data any
	// ExitCode is the container's exit code: v1alpha1.ExitSucceeded, ExitRetryable or ExitFinal.
	ExitCode int
}

// Change is the before/after record the project's actions report as their data.
type Change struct {
	Before any  `json:"before"`
	After  any  `json:"after"`
	DryRun bool `json:"dryRun"`
	// Changed is false when the target already was as asked and nothing was written.
	Changed bool `json:"changed"`
}

// Succeeded is the result of an action that did what it was asked (or, in a dry run, would).
func Succeeded(output string, data any) Result {
	return Result{Success: true, Output: output, Data: data, ExitCode: v1alpha1.ExitSucceeded}
}

// FailedWith is the result of a failure with exit code code (v1alpha1.ExitRetryable when a
// retry may help, v1alpha1.ExitFinal when it cannot).
func FailedWith(code int, why string, data any) Result {
	if code == v1alpha1.ExitSucceeded {
		code = v1alpha1.ExitRetryable
	}
	return Result{Success: false, Error: why, Data: data, ExitCode: code}
}

// Failed is the result of err, with the exit code ExitCode chooses for it.
func Failed(err error, data any) Result {
	if err == nil {
		err = errors.New("failed without an error")
	}
	return FailedWith(ExitCode(err), err.Error(), data)
}

// ExitCode is the exit code for err: v1alpha1.ExitFinal for a failure a retry cannot fix (a
// Final or BadInput error; the API server's NotFound, Invalid, Forbidden, BadRequest and
// MethodNotSupported), v1alpha1.ExitRetryable for the rest (conflicts, refusals by a
// disruption budget, throttling, timeouts, an unreachable API server).
func ExitCode(err error) int {
	switch {
	case errors.Is(err, errFinal), apierrors.IsNotFound(err), apierrors.IsInvalid(err), apierrors.IsForbidden(err),
		apierrors.IsBadRequest(err), apierrors.IsMethodNotSupported(err):
		return v1alpha1.ExitFinal
	}
	return v1alpha1.ExitRetryable
}

// errFinal marks errors no retry can fix.
var errFinal = errors.New("final")

// finalError keeps the wrapped error's message and chain, and is errFinal.
type finalError struct{ err error }

func (f finalError) Error() string        { return f.err.Error() }
func (f finalError) Unwrap() error        { return f.err }
func (f finalError) Is(target error) bool { return target == errFinal }

// Final marks err as one no retry can fix: Failed gives it v1alpha1.ExitFinal.
func Final(err error) error {
	if err == nil {
		return nil
	}
	return finalError{err}
}

// BadInput is a Final error about the action's input: its parameters or its target.
func BadInput(format string, args ...any) error {
	return Final(fmt.Errorf(format, args...))
}

// Execute runs fn for req and returns the result to write and the exit code. A panic in fn is
// a failed result with exit code v1alpha1.ExitFinal (a bug does not go away on retry): its
// value as the error, the stack as the output.
func Execute(ctx context.Context, req *Request, fn Func) (res v1alpha1.ActionResult, code int) {
	defer func() {
		if p := recover(); p != nil {
			stack := debug.Stack()
			fmt.Fprintf(os.Stderr, "panic: %v\n%s", p, stack)
			res = v1alpha1.ActionResult{Success: ptrTo(false), Error: fmt.Sprintf("the action panicked: %v", p), Output: string(stack)}
			code = v1alpha1.ExitFinal
		}
	}()
	r := fn(ctx, req)
	return r.actionResult(), r.exitCode()
}

// actionResult is r as the executor reads it.
func (r Result) actionResult() v1alpha1.ActionResult {
	out := v1alpha1.ActionResult{Success: ptrTo(r.Success), Output: r.Output, Error: r.Error}
	if !r.Success && r.Error == "" {
		out.Error = fmt.Sprintf("the action failed with exit code %d", r.exitCode())
	}
	return withData(out, r.Data)
}

// exitCode is r's exit code, consistent with its success: a failure never exits 0, a success
// always does.
func (r Result) exitCode() int {
	switch {
	case r.Success:
		return v1alpha1.ExitSucceeded
	case r.ExitCode == v1alpha1.ExitSucceeded:
		return v1alpha1.ExitRetryable
	}
	return r.ExitCode
}

// Main runs fn as this process's action and exits: it reads the environment, cancels the
// context on SIGTERM or an interrupt, runs fn through Execute, prints the output (and the
// error, on standard error) for the pod's log, writes the result and exits with its code. An
// environment it cannot read fails with v1alpha1.ExitFinal before fn runs.
func Main(fn Func) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	var res v1alpha1.ActionResult
	var code int
	if env, err := ReadEnv(); err != nil {
		res, code = Failed(err, nil).actionResult(), v1alpha1.ExitFinal
	} else {
		res, code = Execute(ctx, &Request{Env: env, Args: os.Args[1:]}, fn)
	}
	stop()
	if res.Output != "" {
		fmt.Println(res.Output)
	}
	if res.Error != "" {
		fmt.Fprintln(os.Stderr, "error:", res.Error)
	}
	if err := WriteResult(res); err != nil {
		fmt.Fprintln(os.Stderr, "writing the termination message:", err)
	}
	os.Exit(code)
}

// ByName is one image serving several actions: it runs the Func named by the first argument,
// or, with no arguments, by the template's name (ACTION_TYPE), with that name removed from
// the request's Args. An unknown name fails with v1alpha1.ExitFinal.
func ByName(actions map[string]Func) Func {
	return func(ctx context.Context, req *Request) Result {
		name := req.ActionType
		if len(req.Args) > 0 {
			name, req.Args = req.Args[0], req.Args[1:]
		}
		fn, ok := actions[name]
		if !ok {
			known := make([]string, 0, len(actions))
			for n := range actions {
				known = append(known, n)
			}
			slices.Sort(known)
			return FailedWith(v1alpha1.ExitFinal, fmt.Sprintf("unknown action %q; known: %v", name, known), nil)
		}
		return fn(ctx, req)
	}
}

func ptrTo[T any](v T) *T { return &v }
