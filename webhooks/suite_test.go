package webhooks_test

import (
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

var (
	cluster *localcluster.Cluster
	k8s     client.Client
	stopMgr func()
)

func TestWebhooks(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Webhooks suite (local control plane, kubectl)")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(200 * time.Millisecond)

	var err error
	cluster, err = e2eutil.StartClusterWith(ctx, "webhooks", localcluster.Options{
		WebhookPaths: []string{filepath.Join(e2eutil.RepoRoot(), "config", "webhook")},
	})
	Expect(err).NotTo(HaveOccurred())
	scheme := e2eutil.Scheme()
	k8s, err = client.New(cluster.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	Expect(e2eutil.InstallRBAC(ctx, cluster, k8s)).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernaut-executor-ceiling-webhook-tests", Labels: map[string]string{v1alpha1.LabelAggregateToCeiling: "true"}},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}}},
	})).To(Succeed())
	stopMgr, err = e2eutil.StartManager(ctx, cluster, scheme, controllers.ExecutorOptions{
		Backoff: controllers.DefaultBackoff, JobTTL: time.Hour,
		ActionImages: map[string]string{"kubernaut-actions": localcluster.ActionsImage + ":test"},
	})
	Expect(err).NotTo(HaveOccurred())
}, NodeTimeout(3*time.Minute))

var _ = AfterSuite(func() {
	if stopMgr != nil {
		stopMgr()
	}
	if cluster != nil {
		Expect(cluster.Stop()).To(Succeed())
	}
})
