// Package e2eutil holds what the suites on the local control plane share: starting the control
// plane with the project's CRDs and binaries, a steppable clock, and kubectl.
package e2eutil

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

// RepoRoot is the repository's root folder.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// BinDir is where `make build` put the project's binaries (KUBERNAUT_BIN overrides).
func BinDir() string {
	if d := os.Getenv("KUBERNAUT_BIN"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "bin")
}

// KwokBinary is the kwok binary (make test builds it): $KWOK, else kwok in BinDir.
func KwokBinary() (string, error) {
	path := os.Getenv("KWOK")
	if path == "" {
		path = filepath.Join(BinDir(), "kwok")
	}
	if _, err := os.Stat(path); err != nil { //nolint:gosec // the test runner's own setting names the binary
		return "", fmt.Errorf("kwok is not built (make test builds it, or set KWOK): %w", err)
	}
	return path, nil
}

// StartCluster starts the local control plane with the project's CRDs installed and its
// binaries standing in for its images. The binaries must have been built (make build).
func StartCluster(ctx context.Context, name string) (*localcluster.Cluster, error) {
	return StartClusterWith(ctx, name, localcluster.Options{})
}

// StartClusterWith is StartCluster with more options (webhooks to install).
func StartClusterWith(ctx context.Context, name string, opts localcluster.Options) (*localcluster.Cluster, error) {
	bins := BinDir()
	for _, b := range []string{"kubernaut-actions"} {
		if _, err := os.Stat(filepath.Join(bins, b)); err != nil {
			return nil, fmt.Errorf("%s is not built (run make build, or make test): %w", b, err)
		}
	}
	dir, err := os.MkdirTemp("", "kubernaut-"+name+"-")
	if err != nil {
		return nil, err
	}
	opts.Dir, opts.RemoveDirOnStop = dir, true
	if opts.CRDDirs == nil { // an empty, non-nil list installs none (the chart does)
		opts.CRDDirs = []string{filepath.Join(RepoRoot(), "config", "crd")}
	}
	opts.Images = localcluster.ProjectImages(bins)
	c, err := localcluster.Start(ctx, opts)
	if err != nil || len(opts.CRDDirs) == 0 {
		return c, err
	}
	// Installed from config/ rather than the chart: the API server's own admission policies too.
	if out, err := Kubectl(c.Kubeconfig, "", "apply", "-f", filepath.Join(RepoRoot(), "config", "admission")); err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("installing the admission policies: %v: %s", err, out)
	}
	return c, nil
}

// Clock is real time plus an offset that tests advance, so backoff and timeouts are tested
// without sleeping through them.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Since returns the time elapsed since t.
func (c *Clock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// Step moves the clock forward.
func (c *Clock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// Kubectl runs the machine's kubectl against kubeconfig and returns its combined output.
func Kubectl(kubeconfig, stdin string, args ...string) (string, error) {
	cmd := exec.Command("kubectl", args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TokenConfig returns a client config that authenticates as a ServiceAccount, with a token from
// the TokenRequest API, so that RBAC applies to it as it would to a pod of that account.
func TokenConfig(ctx context.Context, admin *rest.Config, namespace, name string) (*rest.Config, error) {
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return nil, err
	}
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return &rest.Config{
		Host:            admin.Host,
		TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData},
		BearerToken:     tr.Status.Token,
	}, nil
}

// GrantUser gives user the rules through a Role and RoleBinding named grant-<user> in namespace,
// or a ClusterRole and ClusterRoleBinding when namespace is "": a tenant for the abuse specs,
// who then acts through impersonation.
func GrantUser(ctx context.Context, c client.Client, user, namespace string, rules ...rbacv1.PolicyRule) error {
	meta := metav1.ObjectMeta{Namespace: namespace, Name: "grant-" + user}
	subjects := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	role, binding := client.Object(&rbacv1.Role{ObjectMeta: meta, Rules: rules}), client.Object(&rbacv1.RoleBinding{
		ObjectMeta: meta, Subjects: subjects, RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: meta.Name},
	})
	if namespace == "" {
		role, binding = &rbacv1.ClusterRole{ObjectMeta: meta, Rules: rules}, &rbacv1.ClusterRoleBinding{
			ObjectMeta: meta, Subjects: subjects, RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: meta.Name},
		}
	}
	if err := c.Create(ctx, role); err != nil {
		return err
	}
	return c.Create(ctx, binding)
}

// ExecutionManifest is a KubernetesExecution as a user writes it for kubectl: action type,
// parameters (YAML flow, "" for none), target (its namespace left out when empty), and extra spec
// lines (two-space indented) appended after the action.
func ExecutionManifest(ns, name, action, params, targetNS, kind, target string, extra ...string) string {
	targetYAML := fmt.Sprintf("{resourceKind: %s, resourceName: %s}", kind, target)
	if targetNS != "" {
		targetYAML = fmt.Sprintf("{namespace: %q, resourceKind: %s, resourceName: %s}", targetNS, kind, target)
	}
	paramsYAML := ""
	if params != "" {
		paramsYAML = "\n    parameters: " + params
	}
	return fmt.Sprintf(`
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: KubernetesExecution
metadata: {name: %s, namespace: %s}
spec:
  action:
    type: %s%s
    target: %s
%s`, name, ns, action, paramsYAML, targetYAML, strings.Join(extra, "\n"))
}
