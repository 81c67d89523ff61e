package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/access"
)

// Events about a target cluster, recorded on its Secret.
const (
	ReasonClusterReady       = "ClusterReady"
	ReasonClusterUnreachable = "ClusterUnreachable"
	ReasonClusterInvalid     = "ClusterInvalid"
)

// Cluster health is probed this often while a cluster is connected, and its cache's first
// sync is waited for at most clusterSyncTimeout per reconcile.
const (
	clusterProbeInterval = 15 * time.Second
	clusterProbeTimeout  = 5 * time.Second
	clusterSyncTimeout   = 10 * time.Second
)

var clusterReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "kubernaut_cluster_ready",
	Help: "1 when the registered target cluster is connected and answers, 0 when it does not; absent once its Secret is gone.",
}, []string{"cluster"})

func init() { metrics.Registry.MustRegister(clusterReady) }

// RemoteCluster is a connected target cluster: its cache (of the objects the executor manages
// there) and client, and whether it answered last time it was asked.
type RemoteCluster struct {
	Name string

	secret  types.NamespacedName
	version string
	// identities maps the hub's requesters to their names there; nil when they are the same.
	identities *access.IdentityMap
	// cl is nil until the cluster first answers: its cache needs the cluster's API to start.
	cl   cluster.Cluster
	ctx  context.Context
	stop context.CancelFunc
	done chan struct{}

	mu        sync.Mutex
	ready     bool
	message   string
	announced bool
}

// Cluster returns the cluster's cache and clients; false until it has first answered.
func (c *RemoteCluster) Cluster() (cluster.Cluster, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cl, c.cl != nil
}

// stopped is closed when the connection ends (nil before it starts).
func (c *RemoteCluster) stopped() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx == nil {
		return nil
	}
	return c.ctx.Done()
}

// Ready reports whether the cluster answered its last probe, and if not, why.
func (c *RemoteCluster) Ready() (bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready, c.message
}

// setReady records a probe's outcome and reports whether it is news: the first outcome of a
// connection, or a change of readiness.
func (c *RemoteCluster) setReady(ready bool, message string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	news := !c.announced || c.ready != ready
	c.ready, c.message, c.announced = ready, message, true
	return news
}

// ClusterRegistry connects the manager to the target clusters registered as Secrets in its
// namespace (labelled v1alpha1.LabelCluster: "true"), at runtime: a new Secret connects, a
// changed one reconnects with the new credentials, a deleted or unlabelled one disconnects. Each
// connection has its own cache, started and stopped with it. A cluster's readiness is probed
// every clusterProbeInterval; changes are Events on the Secret and the kubernaut_cluster_ready
// gauge.
type ClusterRegistry struct {
	// Client reads the Secrets (the hub's).
	Client    client.Client
	Namespace string
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	// OnChange, when set, is called with a cluster's name when it connects, disconnects or its
	// readiness changes.
	OnChange func(cluster string)
	// APIReader reads the Secrets to register (Register), which the cache does not hold until
	// they are labelled.
	APIReader client.Reader
	// Register are Secrets of the namespace to register as clusters when the manager starts
	// (the chart's clusters.secrets): Secret name to cluster name, "" for the Secret's name.
	// Each is labelled (and annotated with the name) once it exists.
	Register map[string]string
	// QPS and Burst are the client-side rate limit of the requests to each target cluster (the
	// manager's --kube-api-qps and --kube-api-burst, which apply to each cluster on its own);
	// client-go's defaults, 5 and 10, when zero, and no limit when QPS is negative.
	QPS   float32
	Burst int

	mu       sync.RWMutex
	clusters map[string]*RemoteCluster
}

// Get returns the connected cluster called name.
func (r *ClusterRegistry) Get(name string) (*RemoteCluster, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.clusters[name]
	return c, ok
}

// Target returns what the execution webhook needs of the cluster called name: its RESTMapper
// and a SubjectAccessReview creator, with the executor's credentials there.
func (r *ClusterRegistry) Target(name string) (meta.RESTMapper, access.Creator, bool, string) {
	c, ok := r.Get(name)
	if !ok {
		return nil, nil, false, ""
	}
	ready, why := c.Ready()
	cl, connected := c.Cluster()
	if !ready || !connected {
		if why == "" {
			why = "not connected yet"
		}
		return nil, nil, true, fmt.Sprintf("the target cluster %q is unreachable: %s", name, why)
	}
	return cl.GetRESTMapper(), cl.GetClient(), true, ""
}

// Identity returns who user is on the cluster: themselves, or their mapped identity when the
// cluster's Secret has an identity map; an error when the map does not name them (or the cluster
// is not registered).
func (r *ClusterRegistry) Identity(name string, user v1alpha1.UserInfo) (v1alpha1.UserInfo, error) {
	c, ok := r.Get(name)
	if !ok {
		return v1alpha1.UserInfo{}, fmt.Errorf("the target cluster %q is not registered", name)
	}
	return c.Identity(user)
}

// Identity returns who user is on the cluster (see access.IdentityMap).
func (c *RemoteCluster) Identity(user v1alpha1.UserInfo) (v1alpha1.UserInfo, error) {
	return c.identities.Identity(user)
}

// Names lists the registered clusters, sorted.
func (r *ClusterRegistry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.clusters))
	for n := range r.clusters {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Reconcile connects, reconnects, probes or disconnects the cluster of one Secret.
func (r *ClusterRegistry) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	secret := &corev1.Secret{}
	err := r.Client.Get(ctx, req.NamespacedName, secret)
	if apierrors.IsNotFound(err) || (err == nil && (secret.Labels[v1alpha1.LabelCluster] != "true" || secret.DeletionTimestamp != nil)) {
		r.disconnect(ctx, req.NamespacedName)
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	name, cfg, err := r.restConfig(secret)
	var identities *access.IdentityMap
	if raw, ok := secret.Data[v1alpha1.ClusterSecretIdentities]; ok && err == nil {
		if identities, err = access.ParseIdentityMap(raw); err != nil {
			err = fmt.Errorf("data.%s: %w", v1alpha1.ClusterSecretIdentities, err)
		}
	}
	if err == nil {
		if other := r.bySecretName(name); other != nil && other.secret != req.NamespacedName {
			err = fmt.Errorf("the cluster name %q is already registered by Secret %s", name, other.secret.Name)
		}
	}
	if err != nil {
		r.disconnect(ctx, req.NamespacedName)
		r.Recorder.Eventf(secret, nil, corev1.EventTypeWarning, ReasonClusterInvalid, "Connect", "Not registered: %v", err)
		return ctrl.Result{}, nil // a new version of the Secret is a new event
	}
	if _, err := rest.TransportFor(cfg); err != nil {
		r.disconnect(ctx, req.NamespacedName)
		r.Recorder.Eventf(secret, nil, corev1.EventTypeWarning, ReasonClusterInvalid, "Connect", "Not registered: %v", err)
		return ctrl.Result{}, nil
	}
	version := secretVersion(name, secret)
	current := r.bySecret(req.NamespacedName)
	if current == nil || current.version != version {
		r.disconnect(ctx, req.NamespacedName)
		current = r.register(name, req.NamespacedName, version, identities)
	}
	ready, message := r.probe(ctx, current, cfg)
	clusterReady.WithLabelValues(name).Set(map[bool]float64{true: 1, false: 0}[ready])
	if current.setReady(ready, message) {
		if ready {
			r.Recorder.Eventf(secret, nil, corev1.EventTypeNormal, ReasonClusterReady, "Connect", "Cluster %s is connected: %s", name, message)
		} else {
			r.Recorder.Eventf(secret, nil, corev1.EventTypeWarning, ReasonClusterUnreachable, "Connect", "Cluster %s is unreachable: %s", name, message)
		}
		if r.OnChange != nil {
			r.OnChange(name)
		}
	}
	log.FromContext(ctx).V(1).Info("probed cluster", "cluster", name, "ready", ready, "message", message)
	return ctrl.Result{RequeueAfter: clusterProbeInterval}, nil
}

// probe asks the cluster for its version, starts its cache once it answers, and waits (a
// little) for the cache's first sync.
func (r *ClusterRegistry) probe(ctx context.Context, c *RemoteCluster, cfg *rest.Config) (bool, string) {
	probeCfg := rest.CopyConfig(cfg)
	probeCfg.Timeout = clusterProbeTimeout
	dc, err := discovery.NewDiscoveryClientForConfig(probeCfg)
	if err != nil {
		return false, err.Error()
	}
	v, err := dc.ServerVersion()
	if err != nil {
		return false, err.Error()
	}
	cl, ok := c.Cluster()
	if !ok {
		if cl, err = r.start(c, cfg); err != nil {
			return false, err.Error()
		}
	}
	syncCtx, cancel := context.WithTimeout(ctx, clusterSyncTimeout)
	defer cancel()
	if !cl.GetCache().WaitForCacheSync(syncCtx) {
		return false, "its cache has not synced yet (the executor's credentials there may lack list or watch rights)"
	}
	return true, "Kubernetes " + v.GitVersion + " at " + cfg.Host
}

// register records a cluster, not yet connected.
func (r *ClusterRegistry) register(name string, secret types.NamespacedName, version string, identities *access.IdentityMap) *RemoteCluster {
	c := &RemoteCluster{Name: name, secret: secret, version: version, identities: identities}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.clusters == nil {
		r.clusters = map[string]*RemoteCluster{}
	}
	r.clusters[name] = c
	return c
}

// start creates the cluster's cache and clients and starts the cache, until disconnect.
func (r *ClusterRegistry) start(c *RemoteCluster, cfg *rest.Config) (cluster.Cluster, error) {
	cl, err := cluster.New(cfg, func(o *cluster.Options) {
		o.Scheme = r.Scheme
		o.Cache = CacheOptions(r.Namespace)
	})
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := cl.Start(ctx); err != nil {
			ctrl.Log.WithName("clusters").Error(err, "the cluster's cache stopped", "cluster", c.Name)
		}
	}()
	c.mu.Lock()
	c.cl, c.ctx, c.stop, c.done = cl, ctx, stop, done
	c.mu.Unlock()
	return cl, nil
}

// disconnect stops the cluster registered by secret, if any.
func (r *ClusterRegistry) disconnect(ctx context.Context, secret types.NamespacedName) {
	c := r.bySecret(secret)
	if c == nil {
		return
	}
	r.mu.Lock()
	delete(r.clusters, c.Name)
	r.mu.Unlock()
	c.mu.Lock()
	stop, done := c.stop, c.done
	c.cl = nil
	c.mu.Unlock()
	if stop != nil {
		stop()
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
	clusterReady.DeleteLabelValues(c.Name)
	log.FromContext(ctx).Info("disconnected cluster", "cluster", c.Name)
	if r.OnChange != nil {
		r.OnChange(c.Name)
	}
}

func (r *ClusterRegistry) bySecret(secret types.NamespacedName) *RemoteCluster {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, c := range r.clusters {
		if c.secret == secret {
			return c
		}
	}
	return nil
}

func (r *ClusterRegistry) bySecretName(name string) *RemoteCluster {
	c, _ := r.Get(name)
	return c
}

// restConfig is clusterConfig with the registry's rate limit.
func (r *ClusterRegistry) restConfig(secret *corev1.Secret) (string, *rest.Config, error) {
	name, cfg, err := clusterConfig(secret)
	if err != nil {
		return "", nil, err
	}
	cfg.QPS, cfg.Burst = r.QPS, r.Burst
	return name, cfg, nil
}

// clusterConfig reads a cluster Secret: the cluster's name and a client config for it.
func clusterConfig(secret *corev1.Secret) (string, *rest.Config, error) {
	name := secret.Name
	if n, ok := secret.Annotations[v1alpha1.AnnotationClusterName]; ok {
		name = n
	}
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return "", nil, fmt.Errorf("the cluster name %q is not a DNS label: %s", name, errs[0])
	}
	if raw, ok := secret.Data[v1alpha1.ClusterSecretKubeconfig]; ok {
		cfg, err := kubeconfigConfig(raw)
		if err != nil {
			return "", nil, fmt.Errorf("data.%s: %w", v1alpha1.ClusterSecretKubeconfig, err)
		}
		return name, cfg, nil
	}
	var missing []string
	for _, k := range []string{v1alpha1.ClusterSecretServer, v1alpha1.ClusterSecretCA, v1alpha1.ClusterSecretToken} {
		if len(secret.Data[k]) == 0 {
			missing = append(missing, "data."+k)
		}
	}
	if len(missing) > 0 {
		return "", nil, fmt.Errorf("neither data.%s nor %v", v1alpha1.ClusterSecretKubeconfig, missing)
	}
	return name, &rest.Config{
		Host:            string(secret.Data[v1alpha1.ClusterSecretServer]),
		BearerToken:     string(secret.Data[v1alpha1.ClusterSecretToken]),
		TLSClientConfig: rest.TLSClientConfig{CAData: secret.Data[v1alpha1.ClusterSecretCA]},
	}, nil
}

// registerRetry is how often Secrets to register that do not exist yet are looked for.
const registerRetry = 10 * time.Second

// registerSecrets labels the Secrets named in Register as clusters (and annotates their
// cluster names), retrying those that do not exist yet, until all are done or ctx ends.
func (r *ClusterRegistry) registerSecrets(ctx context.Context) error {
	pending := maps.Clone(r.Register)
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		for secret, name := range pending {
			done, err := r.registerSecret(ctx, secret, name)
			if err != nil {
				log.FromContext(ctx).Error(err, "registering a cluster Secret", "secret", secret)
			}
			if done {
				delete(pending, secret)
			}
		}
		if len(pending) == 0 {
			<-ctx.Done() // nothing left: wait for the manager to stop
		}
	}, registerRetry)
	return nil
}

// registerSecret labels one Secret as a cluster's; false while it does not exist.
func (r *ClusterRegistry) registerSecret(ctx context.Context, secret, name string) (bool, error) {
	s := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: secret}, s); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	if s.Labels[v1alpha1.LabelCluster] == "true" && (name == "" || s.Annotations[v1alpha1.AnnotationClusterName] == name) {
		return true, nil
	}
	patch := map[string]any{"metadata": map[string]any{"labels": map[string]string{v1alpha1.LabelCluster: "true"}}}
	if name != "" {
		patch["metadata"].(map[string]any)["annotations"] = map[string]string{v1alpha1.AnnotationClusterName: name}
	}
	raw, err := json.Marshal(patch)
	if err != nil {
		return false, err
	}
	if err := r.Client.Patch(ctx, s, client.RawPatch(types.MergePatchType, raw)); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	log.FromContext(ctx).Info("registered a cluster Secret", "secret", secret, "cluster", name)
	return true, nil
}

// kubeconfigConfig reads a kubeconfig's current context. It refuses, before reading anything,
// a kubeconfig that names files or runs programs: those would be the manager's own files (its
// ServiceAccount's token, sent to whichever server the kubeconfig names) and programs.
func kubeconfigConfig(raw []byte) (*rest.Config, error) {
	kc, err := clientcmd.Load(raw)
	if err != nil {
		return nil, err
	}
	ctx, ok := kc.Contexts[kc.CurrentContext]
	if !ok {
		return nil, fmt.Errorf("the current context %q does not exist", kc.CurrentContext)
	}
	if c, ok := kc.Clusters[ctx.Cluster]; ok && c.CertificateAuthority != "" {
		return nil, errors.New("refers to files (certificate-authority); embed them (kubectl config view --flatten --minify)")
	}
	if u, ok := kc.AuthInfos[ctx.AuthInfo]; ok {
		switch {
		case u.ClientCertificate != "" || u.ClientKey != "" || u.TokenFile != "":
			return nil, errors.New("refers to files (client-certificate, client-key or tokenFile); embed them (kubectl config view --flatten --minify)")
		case u.Exec != nil || u.AuthProvider != nil:
			return nil, errors.New("exec and auth-provider credentials are not supported: use a token or a client certificate")
		}
	}
	return clientcmd.NewDefaultClientConfig(*kc, &clientcmd.ConfigOverrides{}).ClientConfig()
}

// secretVersion identifies what a Secret says about its cluster: a change reconnects.
func secretVersion(name string, secret *corev1.Secret) string {
	h := sha256.New()
	h.Write([]byte(name))
	keys := make([]string, 0, len(secret.Data))
	for k := range secret.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		_, _ = fmt.Fprintf(h, "\x00%s\x00%d\x00", k, len(secret.Data[k]))
		h.Write(secret.Data[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// +kubebuilder:rbac:groups="",namespace=kubernaut-system,resources=secrets,verbs=get;list;watch
//
// Labelling the Secrets of Register takes patch on them by name: the chart grants it for the
// names in its values only.

// SetupWithManager watches the labelled Secrets of the manager's namespace.
func (r *ClusterRegistry) SetupWithManager(mgr ctrl.Manager) error {
	if r.Namespace == "" {
		return errors.New("the cluster registry needs the manager's namespace")
	}
	if len(r.Register) > 0 {
		if err := mgr.Add(manager.RunnableFunc(r.registerSecrets)); err != nil {
			return err
		}
	}
	inNamespace := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetNamespace() == r.Namespace })
	return ctrl.NewControllerManagedBy(mgr).
		Named("clusters").
		For(&corev1.Secret{}, builder.WithPredicates(inNamespace)).
		Complete(r)
}
