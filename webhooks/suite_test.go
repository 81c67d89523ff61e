package webhooks_test

import (
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
	cluster   *localcluster.Cluster
	k8s       client.Client
	installed *e2eutil.Installed
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
	installed, err = e2eutil.StartInstalled(ctx, "webhooks", controllers.ExecutorOptions{
		Backoff: controllers.DefaultBackoff, JobTTL: time.Hour,
	})
	Expect(err).NotTo(HaveOccurred())
	cluster, k8s = installed.Cluster, installed.Client
	Expect(k8s.Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernaut-executor-ceiling-webhook-tests", Labels: map[string]string{v1alpha1.LabelAggregateToCeiling: "true"}},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}}},
	})).To(Succeed())
}, NodeTimeout(3*time.Minute))

var _ = AfterSuite(func() {
	Expect(installed.Stop()).To(Succeed())
})
