package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// executionFor parses run's flags and builds the execution they ask for in namespace shop.
func executionFor(t *testing.T, kind resolvedKind, args ...string) (*v1alpha1.KubernetesExecution, error) {
	t.Helper()
	o := &runOptions{}
	flags := pflag.NewFlagSet("run", pflag.ContinueOnError)
	o.bindFlags(flags)
	if err := flags.Parse(args); err != nil {
		t.Fatal(err)
	}
	spec, err := o.parse(flags, "scale-deployment", strings.NewReader(""))
	if err != nil {
		return nil, err
	}
	return spec.execution("shop", kind)
}

func TestRunBuildsTheExecution(t *testing.T) {
	deployment, node := resolvedKind{kind: "Deployment", namespaced: true}, resolvedKind{kind: "Node"}
	for _, tc := range []struct {
		name string
		kind resolvedKind
		args []string
		want string // the execution as YAML
	}{{
		name: "defaults: generated name, target in the execution's namespace, nothing optional set",
		kind: deployment, args: []string{"--target", "deploy/web"},
		want: `
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: KubernetesExecution
metadata: {generateName: scale-deployment-, namespace: shop}
spec:
  action:
    type: scale-deployment
    target: {namespace: shop, resourceKind: Deployment, resourceName: web}
status: {}`,
	}, {
		name: "every flag",
		kind: deployment,
		args: []string{"--target", "Deployment/web", "--target-namespace", "web-ns", "--param", "replicas=3", "--dry-run",
			"--timeout", "5m", "--queue-timeout", "1m", "--max-retries", "0", "--approval", "--name", "scale-web"},
		want: `
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: KubernetesExecution
metadata: {name: scale-web, namespace: shop}
spec:
  action:
    type: scale-deployment
    parameters: {replicas: 3}
    target: {namespace: web-ns, resourceKind: Deployment, resourceName: web}
  approval: Required
  dryRun: true
  maxRetries: 0
  queueTimeout: 1m0s
  timeout: 5m0s
status: {}`,
	}, {
		name: "timeout 0s is sent: it asks for the template's default explicitly",
		kind: deployment, args: []string{"--target", "Deployment/web", "--timeout", "0s"},
		want: `
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: KubernetesExecution
metadata: {generateName: scale-deployment-, namespace: shop}
spec:
  action:
    type: scale-deployment
    target: {namespace: shop, resourceKind: Deployment, resourceName: web}
  timeout: 0s
status: {}`,
	}, {
		name: "a cluster-scoped target has no namespace",
		kind: node, args: []string{"--target", "node/worker-1"},
		want: `
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: KubernetesExecution
metadata: {generateName: scale-deployment-, namespace: shop}
spec:
  action:
    type: scale-deployment
    target: {resourceKind: Node, resourceName: worker-1}
status: {}`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := executionFor(t, tc.kind, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := yaml.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			want, err := yaml.JSONToYAML(mustYAMLToJSON(t, tc.want))
			if err != nil {
				t.Fatal(err)
			}
			// creationTimestamp: null is how an unset metav1.Time marshals; the server ignores it.
			if g := strings.Replace(string(got), "  creationTimestamp: null\n", "", 1); g != string(want) {
				t.Errorf("got\n%s\nwant\n%s", g, want)
			}
		})
	}
}

func mustYAMLToJSON(t *testing.T, y string) []byte {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestRunRejectsBadFlags(t *testing.T) {
	node := resolvedKind{kind: "Node"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--target", "node/worker-1", "--target-namespace", "ops"}, "--target-namespace: Node is cluster-scoped; its objects have no namespace"},
		{[]string{"--target", "node/worker-1", "--timeout", "-1s"}, "--timeout -1s: must not be negative"},
		{[]string{"--target", "node/worker-1", "--max-retries", "-1"}, "--max-retries -1: must not be negative"},
		{[]string{"--target", "node/worker-1", "--params-file", "/no/such/file"}, "--params-file: open /no/such/file"},
	} {
		_, err := executionFor(t, node, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, new(usageError)) {
			t.Errorf("%v: got %v, want a usage error containing %q", tc.args, err, tc.want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	obj := &v1alpha1.KubernetesExecution{Status: v1alpha1.KubernetesExecutionStatus{
		Phase: v1alpha1.PhaseRunning,
		Conditions: []metav1.Condition{
			{Type: v1alpha1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: "Progressing", Message: "ignored"},
			{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: "Progressing", Message: "attempt 1 running"},
		},
	}}
	if got := progressOf(obj).String(); got != "Running (Progressing): attempt 1 running" {
		t.Errorf("got %q", got)
	}
	if got := progressOf(&v1alpha1.KubernetesExecution{Status: v1alpha1.KubernetesExecutionStatus{Phase: "Pending"}}).String(); got != "Pending" {
		t.Errorf("got %q", got)
	}
}

// TestExitCodes runs the plugin's command line as a user would, with no cluster to reach: usage
// errors exit 2 and say which command's help to read.
func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--version"}, exitOK, ""},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"run", "scale-deployment"}, exitUsage, `required flag(s) "target" not set`},
		{[]string{"run", "--target", "a/b"}, exitUsage, "expected the TEMPLATE (an ActionTemplate's name) as the argument"},
		{[]string{"run", "scale-deployment", "--target", "web"}, exitUsage, `--target "web": expected KIND/NAME`},
		{[]string{"run", "scale-deployment", "--target", "a/b", "--param", "x"}, exitUsage, `--param "x": expected key=value`},
		{[]string{"run", "scale-deployment", "--target", "a/b", "--no-such-flag"}, exitUsage, "unknown flag: --no-such-flag"},
		{[]string{"deny", "x"}, exitUsage, `required flag(s) "reason" not set`},
		{[]string{"deny", "x", "--reason", " "}, exitUsage, "--reason must say why the execution is denied"},
		{[]string{"approve", "a", "b"}, exitUsage, "expected one argument, the execution's NAME; got 2: a b"},
		{[]string{"result", "x", "-o", "wide"}, exitUsage, `--output "wide": expected json or yaml`},
		{[]string{"result", "x", "--kubeconfig", "/no/such/kubeconfig"}, exitFailed, "error: stat /no/such/kubeconfig"},
	} {
		var out, errOut bytes.Buffer
		code := execute(tc.args, genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
		if code != tc.code || !strings.Contains(errOut.String(), tc.stderr) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut.String(), tc.code, tc.stderr)
		}
		if tc.code == exitUsage && !strings.Contains(errOut.String(), "--help' for usage.") {
			t.Errorf("%v: a usage error does not point to the help: %q", tc.args, errOut.String())
		}
	}
}

func TestDescribeError(t *testing.T) {
	gk := schema.GroupKind{Group: v1alpha1.GroupVersion.Group, Kind: "KubernetesExecution"}
	invalid := apierrors.NewInvalid(gk, "", field.ErrorList{
		field.Invalid(field.NewPath("spec", "action", "parameters", "replicas"), -1, "must be at least 0"),
		field.Invalid(field.NewPath("spec", "timeout"), "99h0m0s", `must be at most 10m0s, the maxTimeout of action "scale-deployment"`),
	})
	want := `The KubernetesExecution is invalid:
* spec.action.parameters.replicas: Invalid value: -1: must be at least 0
* spec.timeout: Invalid value: "99h0m0s": must be at most 10m0s, the maxTimeout of action "scale-deployment"`
	if got := describeError(invalid); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: gk.Group, Resource: "kubernetesexecutions"}, "x", errors.New("bob may not approve"))
	if got := describeError(forbidden); !strings.HasPrefix(got, "Error from server (Forbidden): ") || !strings.HasSuffix(got, "bob may not approve") {
		t.Errorf("got %q", got)
	}
	if got := describeError(errors.New("dial tcp: refused")); got != "error: dial tcp: refused" {
		t.Errorf("got %q", got)
	}
}
