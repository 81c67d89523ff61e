package audit_test

import (
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/internal/audit"
	"github.com/kubernaut/kubernaut-executor/internal/manager"
	"github.com/kubernaut/kubernaut-executor/test/auditreceiver"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

var (
	installed *e2eutil.Installed
	cluster   *localcluster.Cluster
	k8s       client.Client
	// receiver stands in for the storage service; its events are durable in a file.
	receiver *auditreceiver.Server
	storage  *httptest.Server
)

func TestAudit(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Audit (local control plane, a storage service)")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(60 * time.Second)
	SetDefaultEventuallyPollingInterval(250 * time.Millisecond)

	var err error
	receiver, err = auditreceiver.New(filepath.Join(GinkgoT().TempDir(), "events.jsonl"), auditreceiver.Options{})
	Expect(err).NotTo(HaveOccurred())
	storage = httptest.NewServer(receiver.Handler())
	sender, err := audit.NewSender(audit.Config{URL: storage.URL, Timeout: 2 * time.Second})
	Expect(err).NotTo(HaveOccurred())

	installed, err = e2eutil.StartInstalled(ctx, "audit", controllers.ExecutorOptions{
		Backoff: controllers.Backoff{Base: time.Second, Max: 2 * time.Second}, JobTTL: time.Hour,
	}, func(o *manager.Options) {
		o.Audit = controllers.AuditOptions{Sink: sender}
	})
	Expect(err).NotTo(HaveOccurred())
	cluster, k8s = installed.Cluster, installed.Client
}, NodeTimeout(4*time.Minute))

var _ = AfterSuite(func() {
	Expect(installed.Stop()).To(Succeed())
	if storage != nil {
		storage.Close()
	}
	if receiver != nil {
		Expect(receiver.Close()).To(Succeed())
	}
})
