// Package localcluster runs a real Kubernetes control plane on this machine for the tests and
// the demo: etcd and kube-apiserver (through envtest, with RBAC, ServiceAccount admission and
// Pod Security admission), kube-controller-manager (the real Job, garbage-collector, namespace,
// ServiceAccount and RBAC aggregation controllers) and the node agent in place of a kubelet.
//
// With Options.Kwok it simulates pods instead, for runs at scale: kube-scheduler binds them to
// one Node that kwok runs through the stages in kwok/, so no process runs per pod.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/kubernaut/kubernaut-executor/test/nodeagent"
)

// NodeName is the Node of the local control plane that pods are bound to.
const NodeName = "local-node"

// SpareNodeName is a second Node, run by the same agent, that pods reach only when they name it:
// for cordon and drain without disturbing everything else.
const SpareNodeName = "spare-node"

// KwokNodeName is the Node that kwok runs pods on when Options.Kwok is set.
const KwokNodeName = "kwok-node"

// Options configure a Cluster.
type Options struct {
	// AssetsDir holds etcd, kube-apiserver, kube-controller-manager and kube-scheduler
	// (KUBEBUILDER_ASSETS).
	AssetsDir string
	// Dir receives the kubeconfig, logs and the node agent's files (or kwok's stages). Created
	// if missing.
	Dir string
	// CRDDirs are installed before Start returns.
	CRDDirs []string
	// Images maps image repositories to the binaries the node agent runs for them.
	Images map[string]string
	// RemoveDirOnStop removes Dir when the cluster stops (tests); the demo keeps it.
	RemoveDirOnStop bool
	// PodNetwork gives pods their own addresses in a network namespace, and serves the API on
	// its host-side address, so that a webhook reached through a Service works (needs root and
	// iproute2).
	PodNetwork bool
	// WebhookPaths hold webhook configurations to install, pointed at a local server (see
	// Cluster.Webhook) with generated certificates.
	WebhookPaths []string
	// APIServerFlags are extra kube-apiserver flags, name without dashes to value (for example
	// an audit policy and log for the scale benchmark).
	APIServerFlags map[string]string
	// Kwok is the path of the kwok binary. When set, pods are simulated instead of run: the node
	// agent does not start (Cluster.Agent is nil, Images are not used, PodNetwork cannot be
	// set), kube-scheduler binds pods to the Node KwokNodeName, and kwok plays the stages in
	// kwok/ on them (Running at once, then Job pods finish as their first argument says).
	Kwok string
}

// LoadedImagesDir is the folder of images loaded into the cluster whose Options.Dir is dir
// (nodeagent.LoadImage; `localcluster load-image`).
func LoadedImagesDir(dir string) string { return filepath.Join(dir, "images") }

// Cluster is a running local control plane.
type Cluster struct {
	// Config is an administrator's client config (system:masters).
	Config *rest.Config
	// Kubeconfig is the path of the administrator's kubeconfig.
	Kubeconfig string
	// Agent is the node agent; nil when pods are simulated by kwok (Options.Kwok).
	Agent *nodeagent.Agent
	// Webhook is where the installed webhook configurations send admission reviews: serve them
	// on Host:Port with the certificate in CertDir.
	Webhook WebhookServing

	network   *nodeagent.PodNetwork
	removeDir string
	env       *envtest.Environment
	kcm       *process
	scheduler *process
	kwok      *process
	stopAgent context.CancelFunc
	agentDone chan error
}

// WebhookServing is where a webhook server must listen for the installed configurations.
type WebhookServing struct {
	Host    string
	Port    int
	CertDir string
}

// Start starts the control plane and returns once pods can run: kube-controller-manager has
// created the default ServiceAccount and the node agent has registered its Node, or, with
// Options.Kwok, kwok has made the Node KwokNodeName Ready.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.AssetsDir == "" {
		opts.AssetsDir = os.Getenv("KUBEBUILDER_ASSETS")
	}
	if opts.AssetsDir == "" {
		return nil, errors.New("no control plane binaries: set KUBEBUILDER_ASSETS (make controlplane builds them)")
	}
	if opts.Kwok != "" && opts.PodNetwork {
		return nil, errors.New("a pod network needs the node agent: PodNetwork and Kwok exclude each other")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	removeDir := ""
	if opts.RemoveDirOnStop {
		removeDir = opts.Dir
	}
	c := &Cluster{removeDir: removeDir, env: &envtest.Environment{
		BinaryAssetsDirectory:    opts.AssetsDir,
		CRDDirectoryPaths:        opts.CRDDirs,
		ErrorIfCRDPathMissing:    len(opts.CRDDirs) > 0,
		ControlPlaneStartTimeout: 90 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
		WebhookInstallOptions:    envtest.WebhookInstallOptions{Paths: opts.WebhookPaths},
	}}
	api := c.env.ControlPlane.GetAPIServer()
	// envtest turns ServiceAccount admission off; a real cluster has it, and with it a pod that
	// names a missing ServiceAccount is refused.
	api.Configure().Disable("disable-admission-plugins")
	for name, value := range opts.APIServerFlags {
		api.Configure().Set(name, value)
	}
	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()
	if opts.PodNetwork {
		if c.network, err = newPodNetwork(); err != nil {
			return nil, err
		}
		port, err := freePort(c.network.HostIP)
		if err != nil {
			return nil, err
		}
		api.SecureServing.Address, api.SecureServing.Port = c.network.HostIP, strconv.Itoa(port)
		// Webhooks behind a Service are dialled at their endpoints' addresses.
		api.Configure().Set("enable-aggregator-routing", "true")
	}
	if c.Config, err = c.env.Start(); err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	w := c.env.WebhookInstallOptions
	c.Webhook = WebhookServing{Host: w.LocalServingHost, Port: w.LocalServingPort, CertDir: w.LocalServingCertDir}
	admin, err := c.env.AddUser(envtest.User{Name: "local-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	c.Config = admin.Config()
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(opts.Dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	if err := c.startControllerManager(opts, api.CertDir); err != nil {
		return nil, err
	}
	clientset, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	if err := waitForDefaultServiceAccount(ctx, clientset); err != nil {
		return nil, fmt.Errorf("kube-controller-manager did not start (see %s): %w", c.kcm.log, err)
	}

	if opts.Kwok != "" {
		if err := c.startKwok(ctx, opts, clientset); err != nil {
			return nil, err
		}
		return c, nil
	}
	c.Agent = nodeagent.New(nodeagent.Config{
		NodeName: NodeName, ExtraNodes: []string{SpareNodeName}, Client: clientset, RESTConfig: c.Config, Images: opts.Images,
		LoadedImages: LoadedImagesDir(opts.Dir), Dir: filepath.Join(opts.Dir, "node"), Network: c.network,
	})
	agentCtx, cancel := context.WithCancel(context.Background())
	c.stopAgent, c.agentDone = cancel, make(chan error, 1)
	go func() { c.agentDone <- c.Agent.Run(agentCtx) }()
	select {
	case <-c.Agent.Ready():
	case err := <-c.agentDone:
		c.agentDone <- err
		return nil, fmt.Errorf("node agent: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return c, nil
}

// startControllerManager runs kube-controller-manager against the API server. The node
// lifecycle controller is off: the node agent sends no heartbeats, and nothing here needs
// evictions for an unreachable node.
func (c *Cluster) startControllerManager(opts Options, certDir string) error {
	caFile := filepath.Join(opts.Dir, "ca.crt")
	if err := os.WriteFile(caFile, c.Config.CAData, 0o600); err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=*,-node-lifecycle-controller,-node-ipam-controller",
		"--service-account-private-key-file=" + filepath.Join(certDir, "sa-signer.key"),
		"--root-ca-file=" + caFile,
		"--use-service-account-credentials=false",
		"--concurrent-job-syncs=5",
		"--v=1",
	}
	if opts.Kwok != "" {
		// Simulated pods are for runs at scale: the default client rate limit (20 requests a
		// second, a burst of 30) holds the Job controller to about 3 Jobs a second. Lifted, as
		// kwokctl's --disable-qps-limits lifts it, the API server's CPU is the limit instead
		// (about 30 Jobs a second on 2 cores).
		args = append(args, "--kube-api-qps=5000", "--kube-api-burst=10000")
	}
	var err error
	c.kcm, err = startProcess(filepath.Join(opts.Dir, "kube-controller-manager.log"), nil,
		filepath.Join(opts.AssetsDir, "kube-controller-manager"), args...)
	return err
}

func waitForDefaultServiceAccount(ctx context.Context, cs kubernetes.Interface) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
}

// Stop stops the node agent (killing the processes it runs) or kwok and kube-scheduler,
// kube-controller-manager, the API server and etcd.
func (c *Cluster) Stop() error {
	var errs []error
	if c.stopAgent != nil {
		c.stopAgent()
		if err := <-c.agentDone; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	c.kwok.kill()
	c.scheduler.kill()
	c.kcm.kill()
	if err := c.env.Stop(); err != nil {
		errs = append(errs, err)
	}
	if c.network != nil {
		c.network.Close()
	}
	if c.removeDir != "" {
		_ = os.RemoveAll(c.removeDir)
	}
	return errors.Join(errs...)
}

// podNetworkMu serializes picking and creating pod networks: two clusters started at once in
// one process start from the same subnet (the seed is the process id), and the second would
// otherwise pick it before the first has taken its address.
var podNetworkMu sync.Mutex

// newPodNetwork creates a pod network on a subnet no other on this machine uses.
func newPodNetwork() (*nodeagent.PodNetwork, error) {
	podNetworkMu.Lock()
	defer podNetworkMu.Unlock()
	n, err := nodeagent.FreeSubnet(os.Getpid())
	if err != nil {
		return nil, err
	}
	network, err := nodeagent.NewPodNetwork(n)
	if err != nil {
		return nil, fmt.Errorf("creating the pod network: %w", err)
	}
	return network, nil
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	// The port is free for the caller only once this listener is closed.
	return port, l.Close()
}

// Namespace creates a namespace with labels and returns its name; names are unique per call.
func (c *Cluster) Namespace(ctx context.Context, prefix string, labels map[string]string) (string, error) {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return "", err
	}
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: prefix + "-", Labels: labels,
	}}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return ns.Name, nil
}
