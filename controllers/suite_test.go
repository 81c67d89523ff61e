package controllers_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

// The backoff the suite's manager uses: long enough that real time never reaches it during a
// test, so only a step of the test clock starts a retry.
var testBackoff = controllers.Backoff{Base: 30 * time.Second, Max: 10 * time.Minute}

var (
	cluster   *localcluster.Cluster
	k8s       client.Client
	testClock = &e2eutil.Clock{}
	scheme    = runtime.NewScheme()
	stopMgr   context.CancelFunc
	mgrDone   = make(chan struct{})
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controllers suite (local control plane)")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(200 * time.Millisecond)
	SetDefaultConsistentlyDuration(2 * time.Second)

	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(v1alpha1.AddToScheme(scheme)).To(Succeed())

	var err error
	cluster, err = e2eutil.StartCluster(ctx, "controllers")
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.New(cluster.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	mgr, err := ctrl.NewManager(cluster.Config, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(),
	})
	Expect(err).NotTo(HaveOccurred())
	Expect((&controllers.KubernetesExecutionReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("kubernaut-executor"),
		Clock:     testClock,
		Random:    rand.Float64,
		Options: controllers.ExecutorOptions{
			Backoff:      testBackoff,
			JobTTL:       time.Hour,
			ActionImages: map[string]string{"kubernaut-actions": localcluster.ActionsImage + ":test"},
		},
	}).SetupWithManager(mgr)).To(Succeed())

	mgrCtx, cancel := context.WithCancel(context.Background())
	stopMgr = cancel
	go func() {
		defer GinkgoRecover()
		defer close(mgrDone)
		Expect(mgr.Start(mgrCtx)).To(Succeed())
	}()
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
