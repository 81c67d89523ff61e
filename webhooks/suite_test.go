package webhooks_test

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
	"github.com/kubernaut/kubernaut-executor/webhooks"
)

var (
	cluster *localcluster.Cluster
	k8s     client.Client
	scheme  = runtime.NewScheme()
	stopMgr context.CancelFunc
	mgrDone = make(chan struct{})
)

func TestWebhooks(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Webhooks suite (local control plane, kubectl)")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(200 * time.Millisecond)
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(v1alpha1.AddToScheme(scheme)).To(Succeed())

	var err error
	cluster, err = e2eutil.StartClusterWith(ctx, "webhooks", localcluster.Options{
		WebhookPaths: []string{filepath.Join(e2eutil.RepoRoot(), "config", "webhook")},
	})
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.New(cluster.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	out, err := e2eutil.Kubectl(cluster.Kubeconfig, "", "apply", "-f", filepath.Join(e2eutil.RepoRoot(), "config", "rbac"))
	Expect(err).NotTo(HaveOccurred(), out)
	Expect(k8s.Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernaut-executor-ceiling-webhook-tests", Labels: map[string]string{controllers.LabelAggregateToCeiling: "true"}},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}},
		},
	})).To(Succeed())
	Eventually(func(g Gomega) {
		ceiling := &rbacv1.ClusterRole{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: controllers.DefaultCeilingName}, ceiling)).To(Succeed())
		g.Expect(ceiling.Rules).NotTo(BeEmpty())
	}).Should(Succeed())

	managerConfig, err := e2eutil.TokenConfig(ctx, cluster.Config, "kubernaut-system", "kubernaut-executor")
	Expect(err).NotTo(HaveOccurred())
	mgr, err := ctrl.NewManager(managerConfig, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(),
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: cluster.Webhook.Host, Port: cluster.Webhook.Port, CertDir: cluster.Webhook.CertDir,
		}),
	})
	Expect(err).NotTo(HaveOccurred())
	mgrCtx, cancel := context.WithCancel(context.Background())
	stopMgr = cancel
	validator := &validation.Validator{}
	Expect(controllers.Setup(mgrCtx, mgr, controllers.Config{
		ExecutorOptions: controllers.ExecutorOptions{
			Backoff: controllers.DefaultBackoff, JobTTL: time.Hour,
			ActionImages: map[string]string{"kubernaut-actions": localcluster.ActionsImage + ":test"},
		},
		Clock: realClock{}, Random: rand.Float64, Validator: validator,
	})).To(Succeed())
	Expect(webhooks.Setup(mgr, webhooks.Config{Validator: validator, CeilingName: controllers.DefaultCeilingName})).To(Succeed())
	go func() {
		defer GinkgoRecover()
		defer close(mgrDone)
		Expect(mgr.Start(mgrCtx)).To(Succeed())
	}()
	// The webhook answers once the manager serves it.
	Eventually(func() error {
		_, err := e2eutil.Kubectl(cluster.Kubeconfig, "", "apply", "--dry-run=server", "-f", filepath.Join(e2eutil.RepoRoot(), "test", "demo", "test-action.yaml"))
		return err
	}).Should(Succeed())
}, NodeTimeout(3*time.Minute))

var _ = AfterSuite(func() {
	if stopMgr != nil {
		stopMgr()
		<-mgrDone
	}
	if cluster != nil {
		Expect(cluster.Stop()).To(Succeed())
	}
})

type realClock struct{}

func (realClock) Now() time.Time                  { return time.Now() }
func (realClock) Since(t time.Time) time.Duration { return time.Since(t) }
