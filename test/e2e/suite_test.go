// Package e2e runs every predefined action through the whole path on the local control plane:
// kubectl apply, the webhook, the Job, the node agent running the action image under its
// just-in-time grant, and the real effect on the target; and reads the manager's metrics endpoint
// as Prometheus does.
package e2e

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
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
	// metrics is the manager's metrics endpoint, read over HTTP as Prometheus reads it.
	metrics = &e2eutil.MetricsEndpoint{}
)

// predefined are the shipped templates, by name: one per file in templates/.
var predefined = e2eutil.PredefinedActions()

func TestActions(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Predefined actions end to end (local control plane)")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(60 * time.Second)
	SetDefaultEventuallyPollingInterval(250 * time.Millisecond)

	var err error
	installed, err = e2eutil.StartInstalled(ctx, "actions", controllers.ExecutorOptions{
		Backoff: controllers.Backoff{Base: time.Second, Max: 5 * time.Second}, JobTTL: time.Hour,
	}, metrics.Option())
	Expect(err).NotTo(HaveOccurred())
	cluster, k8s = installed.Cluster, installed.Client
	Eventually(func() error { _, err := metrics.Scrape(ctx); return err }).Should(Succeed(), "the manager serves its metrics")

	// The manager installs every shipped template from its ConfigMap (config/predefined, as the
	// chart does); each passes the admission checks and becomes Ready.
	for _, name := range predefined {
		Eventually(func(g Gomega) {
			tpl := &v1alpha1.ActionTemplate{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, tpl)).To(Succeed())
			g.Expect(tpl.Labels).To(HaveKeyWithValue(v1alpha1.LabelPredefinedAction, name))
			g.Expect(meta.IsStatusConditionTrue(tpl.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue(), "%s: %v", name, tpl.Status.Conditions)
		}).Should(Succeed())
	}
}, NodeTimeout(4*time.Minute))

var _ = AfterSuite(func() {
	Expect(installed.Stop()).To(Succeed())
})
