package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

func TestEnvFrom(t *testing.T) {
	vars := map[string]string{
		v1alpha1.EnvActionType: "scale-deployment", v1alpha1.EnvTargetKind: "Deployment", v1alpha1.EnvTargetName: "web",
		v1alpha1.EnvTargetNamespace: "shop", v1alpha1.EnvDryRun: "true", v1alpha1.EnvExecutionAttempt: "3",
		v1alpha1.EnvExecutionName: "scale-web", v1alpha1.EnvExecutionNamespace: "ops",
	}
	env, err := EnvFrom(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := Env{ActionType: "scale-deployment", Namespace: "shop", Kind: "Deployment", Name: "web", ExecutionName: "scale-web",
		ExecutionNamespace: "ops", DryRun: true, Attempt: 3, Parameters: json.RawMessage("{}")}
	if fmt.Sprint(env) != fmt.Sprint(want) || string(env.Parameters) != "{}" || env.Attempt != 3 || !env.DryRun {
		t.Fatalf("got %+v, want %+v", env, want)
	}
	for name, value := range map[string]string{v1alpha1.EnvDryRun: "maybe", v1alpha1.EnvExecutionAttempt: "0"} {
		bad := map[string]string{name: value}
		_, err := EnvFrom(func(k string) string { return bad[k] })
		if err == nil || !strings.Contains(err.Error(), name) || ExitCode(err) != v1alpha1.ExitFinal {
			t.Errorf("%s=%q: error %v (exit %d), want a final error naming the variable", name, value, err, ExitCode(err))
		}
	}
}

func TestDecodeRefusesUnknownFields(t *testing.T) {
	var p struct {
		Replicas int32 `json:"replicas"`
	}
	env := Env{Parameters: json.RawMessage(`{"replicas":3}`)}
	if err := env.Decode(&p); err != nil || p.Replicas != 3 {
		t.Fatalf("decode: %v, %+v", err, p)
	}
	for _, params := range []string{`{"replicas":3,"replica":2}`, `{"replicas":"3"}`, `{"replicas":3} {}`, `[]`} {
		err := Env{Parameters: json.RawMessage(params)}.Decode(&p)
		if err == nil || !strings.Contains(err.Error(), v1alpha1.EnvActionParameters) || ExitCode(err) != v1alpha1.ExitFinal {
			t.Errorf("%s: error %v (exit %d), want a final error naming %s", params, err, ExitCode(err), v1alpha1.EnvActionParameters)
		}
	}
	if err := (Env{Parameters: json.RawMessage(`{"replica":2}`)}).Decode(&p); err == nil || !strings.Contains(err.Error(), `"replica"`) {
		t.Errorf("the unknown field is not named: %v", err)
	}
}

func TestRequireKind(t *testing.T) {
	env := Env{Kind: "Deployment", Name: "web"}
	if err := env.RequireKind("StatefulSet", "Deployment"); err != nil {
		t.Fatal(err)
	}
	if err := env.RequireKind("Node"); err == nil || ExitCode(err) != v1alpha1.ExitFinal || !strings.Contains(err.Error(), v1alpha1.EnvTargetKind) {
		t.Fatalf("wrong kind: %v", err)
	}
	if err := (Env{Kind: "Node"}).RequireKind("Node"); err == nil || !strings.Contains(err.Error(), v1alpha1.EnvTargetName) {
		t.Fatalf("no name: %v", err)
	}
}

func TestExitCode(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	tests := []struct {
		err  error
		want int
	}{
		{apierrors.NewNotFound(gr, "web"), v1alpha1.ExitFinal},
		{apierrors.NewForbidden(gr, "web", errors.New("no")), v1alpha1.ExitFinal},
		{apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "Deployment"}, "web", nil), v1alpha1.ExitFinal},
		{apierrors.NewBadRequest("no"), v1alpha1.ExitFinal},
		{BadInput("replicas must be set"), v1alpha1.ExitFinal},
		{fmt.Errorf("reading the target: %w", Final(errors.New("gone"))), v1alpha1.ExitFinal},
		{apierrors.NewConflict(gr, "web", errors.New("changed")), v1alpha1.ExitRetryable},
		{apierrors.NewTooManyRequests("pdb", 1), v1alpha1.ExitRetryable},
		{apierrors.NewServiceUnavailable("down"), v1alpha1.ExitRetryable},
		{context.DeadlineExceeded, v1alpha1.ExitRetryable},
		{errors.New("anything else"), v1alpha1.ExitRetryable},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
		if r := Failed(tt.err, nil); r.Success || r.ExitCode != tt.want || r.Error != tt.err.Error() {
			t.Errorf("Failed(%v) = %+v", tt.err, r)
		}
	}
	if err := Final(errors.New("x")); err.Error() != "x" {
		t.Errorf("Final changed the message: %q", err)
	}
}

func TestExecute(t *testing.T) {
	ctx := context.Background()
	run := func(fn Func) (v1alpha1.ActionResult, int) { return Execute(ctx, &Request{}, fn) }

	res, code := run(func(context.Context, *Request) Result {
		return Succeeded("done", Change{Before: 1, After: 2, Changed: true})
	})
	if code != 0 || !*res.Success || res.Output != "done" || string(res.Data) != `{"before":1,"after":2,"dryRun":false,"changed":true}` {
		t.Errorf("succeeded: %d %+v %s", code, res, res.Data)
	}
	// A failure never exits 0, and always says why.
	res, code = run(func(context.Context, *Request) Result { return Result{} })
	if code != v1alpha1.ExitRetryable || *res.Success || res.Error == "" {
		t.Errorf("empty failure: %d %+v", code, res)
	}
	res, code = run(func(context.Context, *Request) Result { return FailedWith(v1alpha1.ExitFinal, "no", nil) })
	if code != v1alpha1.ExitFinal || res.Error != "no" {
		t.Errorf("final failure: %d %+v", code, res)
	}
	// A panic is a failed result, not a crash without one.
	res, code = run(func(_ context.Context, r *Request) Result {
		return Succeeded(r.RESTConfig.Host, nil) // no RESTConfig: a nil pointer dereference
	})
	if code != v1alpha1.ExitFinal || *res.Success || !strings.Contains(res.Error, "panicked: runtime error: invalid memory address or nil pointer dereference") ||
		!strings.Contains(res.Output, "action_test.go") {
		t.Errorf("panic: %d %+v", code, res)
	}
	// Data that cannot be encoded is dropped, and the error says so.
	res, _ = run(func(context.Context, *Request) Result { return Succeeded("ok", func() {}) })
	if res.Data != nil || !strings.Contains(res.Error, "data could not be encoded") {
		t.Errorf("unencodable data: %+v", res)
	}
}

func TestByName(t *testing.T) {
	var ran string
	var args []string
	actions := map[string]Func{
		"scale-deployment": func(_ context.Context, r *Request) Result {
			ran, args = "scale-deployment", r.Args
			return Succeeded("", nil)
		},
		"cordon-node": func(_ context.Context, r *Request) Result {
			ran, args = "cordon-node", r.Args
			return Succeeded("", nil)
		},
	}
	fn := ByName(actions)
	fn(context.Background(), &Request{Env: Env{ActionType: "scale-deployment"}, Args: []string{"cordon-node", "--x"}})
	if ran != "cordon-node" || len(args) != 1 || args[0] != "--x" {
		t.Errorf("by argument: ran %q with %q", ran, args)
	}
	fn(context.Background(), &Request{Env: Env{ActionType: "scale-deployment"}})
	if ran != "scale-deployment" {
		t.Errorf("by ACTION_TYPE: ran %q", ran)
	}
	r := fn(context.Background(), &Request{Args: []string{"drain"}})
	if r.ExitCode != v1alpha1.ExitFinal || !strings.Contains(r.Error, `unknown action "drain"; known: [cordon-node scale-deployment]`) {
		t.Errorf("unknown: %+v", r)
	}
}

// recorder is an API server that answers every request with an empty object and records its
// method and dryRun parameter.
type recorder struct {
	mu   sync.Mutex
	seen []string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	rec.seen = append(rec.seen, fmt.Sprintf("%s dryRun=%v", r.Method, r.URL.Query()["dryRun"]))
	rec.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"}}`))
}

// TestDryRunMakesEveryWriteADryRun checks that in a dry run the request's clients send every
// write with dryRun=All, even one whose options do not ask for it, and reads as they are; and
// that outside a dry run they add nothing.
func TestDryRunMakesEveryWriteADryRun(t *testing.T) {
	for _, dryRun := range []bool{true, false} {
		rec := &recorder{}
		srv := httptest.NewServer(rec)
		req := &Request{Env: Env{DryRun: dryRun}, RESTConfig: &rest.Config{Host: srv.URL}}
		cs, err := req.Clientset()
		if err != nil {
			t.Fatal(err)
		}
		deployments := cs.AppsV1().Deployments("shop")
		ctx := context.Background()
		_, _ = deployments.Get(ctx, "web", metav1.GetOptions{})
		_, _ = deployments.Patch(ctx, "web", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{})
		_, _ = deployments.Update(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.UpdateOptions{})
		_ = deployments.Delete(ctx, "web", metav1.DeleteOptions{DryRun: req.DryRunOption()})
		dyn, err := req.Dynamic()
		if err != nil {
			t.Fatal(err)
		}
		_, _ = dyn.Resource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}).Namespace("shop").
			Patch(ctx, "web", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{})
		srv.Close()
		want := "GET dryRun=[] PATCH dryRun=[] PUT dryRun=[] DELETE dryRun=[] PATCH dryRun=[]"
		if dryRun {
			want = "GET dryRun=[] PATCH dryRun=[All] PUT dryRun=[All] DELETE dryRun=[All] PATCH dryRun=[All]"
		}
		if got := strings.Join(rec.seen, " "); got != want {
			t.Errorf("dry run %v: requests %q, want %q", dryRun, got, want)
		}
	}
}

// TestMain lets TestMainWritesTheResultAndExits run Main in a child process of this test binary.
func TestMain(m *testing.M) {
	if os.Getenv("SDK_TEST_ACTION") != "" {
		Main(ByName(map[string]Func{
			"panic": func(context.Context, *Request) Result { panic("out of luck") },
			"huge": func(_ context.Context, r *Request) Result {
				return FailedWith(v1alpha1.ExitRetryable, strings.Repeat("why ", 3000), map[string]string{"target": r.Target()})
			},
		}))
	}
	os.Exit(m.Run())
}

// TestMainWritesTheResultAndExits runs Main as an action's container would: the result in the
// termination message, valid and within 4 KiB, with the resource usage, and the exit code.
func TestMainWritesTheResultAndExits(t *testing.T) {
	tests := []struct {
		args      []string
		env       []string
		wantCode  int
		wantError string
	}{
		{args: []string{"panic"}, wantCode: v1alpha1.ExitFinal, wantError: "the action panicked: out of luck"},
		{args: []string{"huge"}, wantCode: v1alpha1.ExitRetryable, wantError: "why why"},
		{args: []string{"huge"}, env: []string{v1alpha1.EnvDryRun + "=perhaps"}, wantCode: v1alpha1.ExitFinal, wantError: `DRY_RUN="perhaps" is not a boolean`},
		{args: []string{"nothing"}, wantCode: v1alpha1.ExitFinal, wantError: `unknown action "nothing"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(append(tt.args, tt.env...), " "), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "termination-log")
			cmd := exec.Command(os.Args[0], tt.args...) //nolint:gosec // G204: the test binary itself.
			cmd.Env = append(os.Environ(), "SDK_TEST_ACTION=1", "TERMINATION_MESSAGE_PATH="+path,
				v1alpha1.EnvTargetNamespace+"=shop", v1alpha1.EnvTargetName+"=web")
			cmd.Env = append(cmd.Env, tt.env...)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tt.wantCode {
				t.Fatalf("exit: %v, want code %d; output:\n%s", err, tt.wantCode, out)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			res, ok := v1alpha1.ParseActionResult(string(b))
			if !ok || len(b) > v1alpha1.MaxResultBytes || res.Success == nil || *res.Success {
				t.Fatalf("termination message (%d bytes) is not a failed result: %s", len(b), b)
			}
			if !strings.Contains(res.Error, tt.wantError) {
				t.Errorf("error %q, want it to contain %q", res.Error, tt.wantError)
			}
			if u := res.ResourceUsage; u == nil || u.PeakMemoryBytes <= 0 {
				t.Errorf("no resource usage: %s", b)
			}
		})
	}
}
