package e2eutil

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/internal/manager"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

// Scheme returns the manager's scheme: the built-in types and the project's.
func Scheme() *runtime.Scheme {
	s, err := manager.Scheme()
	if err != nil {
		panic(err) // the types are the project's own; adding them cannot fail
	}
	return s
}

// Namespace is the manager's namespace, as config/ and the suites install it.
const Namespace = "kubernaut-system"

// InstallRBAC applies config/rbac (the manager's namespace, ServiceAccount and roles, the
// ceiling and the predefined actions' fragments) and config/predefined (the predefined actions'
// ConfigMaps, from which a running manager creates their ActionTemplates); make manifests renders
// both from the chart's own templates. It waits until the ceiling holds the predefined rules.
func InstallRBAC(ctx context.Context, c *localcluster.Cluster, k8s client.Client) error {
	for _, dir := range []string{"rbac", "predefined"} {
		if out, err := Kubectl(c.Kubeconfig, "", "apply", "-f", filepath.Join(RepoRoot(), "config", dir)); err != nil {
			return fmt.Errorf("applying config/%s: %w: %s", dir, err, out)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ceiling := &rbacv1.ClusterRole{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: controllers.DefaultCeilingName}, ceiling); err == nil && len(ceiling.Rules) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the ceiling was not aggregated")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// StartManager runs the executor's manager, controllers and webhooks, built as the shipped
// binary builds it (internal/manager), as the manager's own ServiceAccount, serving the webhooks
// where the cluster expects them. stop stops it. The manager always uses the project's scheme
// (manager.Scheme); the scheme argument is not used.
func StartManager(ctx context.Context, c *localcluster.Cluster, _ *runtime.Scheme, opts controllers.ExecutorOptions, more ...func(*manager.Options)) (stop func(), err error) {
	cfg, err := TokenConfig(ctx, c.Config, Namespace, "kubernaut-executor")
	if err != nil {
		return nil, err
	}
	mgrCtx, cancel := context.WithCancel(context.Background())
	mgrOpts := manager.Options{
		Namespace: Namespace,
		Executor:  opts,
		Webhooks:  &webhook.Options{Host: c.Webhook.Host, Port: c.Webhook.Port, CertDir: c.Webhook.CertDir},
	}
	for _, m := range more {
		m(&mgrOpts)
	}
	mgr, err := manager.New(mgrCtx, cfg, mgrOpts)
	if err != nil {
		cancel()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mgrCtx) }()
	// The webhooks answer once the manager serves them.
	probe := filepath.Join(RepoRoot(), "templates", "scale-deployment.yaml")
	for deadline := time.Now().Add(60 * time.Second); ; {
		if _, err := Kubectl(c.Kubeconfig, "", "apply", "--dry-run=server", "-f", probe); err == nil {
			break
		}
		select {
		case err := <-done:
			cancel()
			return nil, fmt.Errorf("the manager stopped before its webhooks answered: %w", err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			return nil, fmt.Errorf("the webhooks did not answer")
		}
		time.Sleep(250 * time.Millisecond)
	}
	return func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintf(os.Stderr, "the manager stopped with an error: %v\n", err)
		}
	}, nil
}

// Installed is a local control plane with the executor installed from config/ (CRDs, admission
// policies, RBAC, the predefined actions) and its manager running, webhooks included: what the
// suites that drive the executor through kubectl start from.
type Installed struct {
	// Cluster is the control plane.
	Cluster *localcluster.Cluster
	// Client is an administrator's client.
	Client client.Client
	stop   func()
	opts   controllers.ExecutorOptions
	more   []func(*manager.Options)
}

// StartInstalled starts an Installed executor whose manager runs with opts (and whatever more
// changes in its options). The action image is the project's binary (as localcluster runs it).
func StartInstalled(ctx context.Context, name string, opts controllers.ExecutorOptions, more ...func(*manager.Options)) (*Installed, error) {
	return StartInstalledOn(ctx, name, localcluster.Options{}, opts, more...)
}

// StartInstalledOn is StartInstalled on a control plane started with copts, for example with
// Kwok set so that kwok finishes the action pods (see KwokBinary). The webhook configurations
// are always config/webhook.
func StartInstalledOn(ctx context.Context, name string, copts localcluster.Options, opts controllers.ExecutorOptions, more ...func(*manager.Options)) (*Installed, error) {
	copts.WebhookPaths = []string{filepath.Join(RepoRoot(), "config", "webhook")}
	c, err := StartClusterWith(ctx, name, copts)
	if err != nil {
		return nil, err
	}
	in := &Installed{Cluster: c, opts: opts, more: more}
	if in.Client, err = client.New(c.Config, client.Options{Scheme: Scheme()}); err == nil {
		if err = InstallRBAC(ctx, c, in.Client); err == nil {
			if opts.ActionImages == nil {
				opts.ActionImages = map[string]string{"kubernaut-actions": localcluster.ActionsImage + ":test"}
			}
			in.stop, err = StartManager(ctx, c, Scheme(), opts, more...)
		}
	}
	if err != nil {
		_ = c.Stop()
		return nil, err
	}
	return in, nil
}

// RestartManager stops the manager, as a crash would between any two of its API calls, and
// starts it again with the same options.
func (in *Installed) RestartManager(ctx context.Context) error {
	in.stop()
	var err error
	// One process: the restarted manager's controllers have the same names as the first's.
	more := append(in.more[:len(in.more):len(in.more)], func(o *manager.Options) { o.SkipNameValidation = true })
	in.stop, err = StartManager(ctx, in.Cluster, Scheme(), in.opts, more...)
	return err
}

// Stop stops the manager and the control plane.
func (in *Installed) Stop() error {
	if in == nil {
		return nil
	}
	if in.stop != nil {
		in.stop()
	}
	return in.Cluster.Stop()
}
