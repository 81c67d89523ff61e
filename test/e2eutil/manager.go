package e2eutil

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
	"github.com/kubernaut/kubernaut-executor/webhooks"
)

// Scheme returns a scheme with the built-in types and the project's.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// Namespace is the manager's namespace, as config/ and the suites install it.
const Namespace = "kubernaut-system"

// InstallRBAC applies config/rbac (the manager's namespace, ServiceAccount and roles, the
// ceiling and the predefined actions' fragments) and config/predefined (the predefined actions'
// ConfigMaps, from which a running manager creates their ActionTemplates, as the chart installs
// them), and waits until the ceiling holds the predefined rules.
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

// StartManager runs the executor's manager, controllers and webhooks, as the manager's own
// ServiceAccount, serving the webhooks where the cluster expects them. stop stops it.
func StartManager(ctx context.Context, c *localcluster.Cluster, scheme *runtime.Scheme, opts controllers.ExecutorOptions) (stop func(), err error) {
	cfg, err := TokenConfig(ctx, c.Config, Namespace, "kubernaut-executor")
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(Namespace),
		WebhookServer:          webhook.NewServer(webhook.Options{Host: c.Webhook.Host, Port: c.Webhook.Port, CertDir: c.Webhook.CertDir}),
	})
	if err != nil {
		return nil, err
	}
	mgrCtx, cancel := context.WithCancel(context.Background())
	validator := &validation.Validator{}
	if err := controllers.Setup(mgrCtx, mgr, controllers.Config{
		ExecutorOptions: opts, Namespace: Namespace, Clock: realClock{}, Random: rand.Float64, Validator: validator,
	}); err != nil {
		cancel()
		return nil, err
	}
	if err := webhooks.Setup(mgr, webhooks.Config{Validator: validator, CeilingName: controllers.DefaultCeilingName}); err != nil {
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
		if time.Now().After(deadline) {
			cancel()
			return nil, fmt.Errorf("the webhooks did not answer")
		}
		time.Sleep(250 * time.Millisecond)
	}
	return func() { cancel(); <-done }, nil
}

type realClock struct{}

func (realClock) Now() time.Time                  { return time.Now() }
func (realClock) Since(t time.Time) time.Duration { return time.Since(t) }
