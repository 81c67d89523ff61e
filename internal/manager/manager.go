// Package manager builds the executor's controller manager: the project's scheme and cache, the
// controllers, and, when asked, the admission webhooks and health checks. The shipped binary and
// the suites that run the manager in process build it here, so both run the same wiring.
package manager

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/internal/access"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
	"github.com/kubernaut/kubernaut-executor/webhooks"
)

// LeaderElectionID names the lease that replicas of the manager elect their leader with.
const LeaderElectionID = "kubernaut-executor.kubernaut.io"

// Defaults of the client-side rate limit of the manager's requests to the API server. client-go
// applies them to each API resource the manager's clients use (executions, Jobs, Roles, ...), so
// one kind's traffic does not hold up another's. They bound what a manager that goes wrong (a
// hot loop) can send to an API server whose priority level it shares with other workloads'
// controllers, and leave room for load: the busiest resource, the executions (two metadata and
// three status patches per successful execution, see docs/performance.md), sustains about ten
// executions a second at 50 requests a second, in bursts of twenty. Left unset, a rest.Config
// gets client-go's 5 a second (burst 10), and controller-runtime's loader lifts the limit
// altogether (QPS -1): the first would make the executions wait on the client, the second
// leaves only the API server's priority and fairness, which protects the API server but not its
// other clients from a runaway manager.
const (
	DefaultKubeAPIQPS   = 50
	DefaultKubeAPIBurst = 100
)

// Options is what a manager is built from. The zero value of each field is safe: no metrics
// or probe endpoint, no leader election, no webhooks, and the controllers' defaults.
type Options struct {
	// Namespace is the manager's own namespace (the Helm release's): the only one whose
	// predefined actions' ConfigMaps it reads. Required.
	Namespace string
	// CeilingName is the aggregated ClusterRole that bounds every template's rules (default
	// controllers.DefaultCeilingName).
	CeilingName string
	// Executor is how executions run: backoff, Job TTL, action images.
	Executor controllers.ExecutorOptions
	// Clock is the time source for timeouts and backoff (default the real clock).
	Clock clock.PassiveClock
	// Random returns a number in [0, 1) for backoff jitter (default math/rand/v2's Float64).
	Random func() float64
	// SweepInterval is how often grants whose execution is gone are removed (default
	// controllers.DefaultSweepInterval).
	SweepInterval time.Duration
	// Audit says where executions' audit events go (the manager's log when no sink is set).
	Audit controllers.AuditOptions
	// MaxConcurrentReconciles is how many executions are reconciled at once (default
	// controllers.DefaultMaxConcurrentReconciles).
	MaxConcurrentReconciles int
	// Events says which Events the controllers record (default controllers.EventsAll).
	Events controllers.EventVolume

	// KubeAPIQPS and KubeAPIBurst are the client-side rate limit of the manager's requests to
	// the API server (rest.Config QPS and Burst, which replace cfg's): DefaultKubeAPIQPS and
	// DefaultKubeAPIBurst when zero; a negative KubeAPIQPS lifts the limit. client-go applies
	// them to each API resource the manager's clients use; the API server's priority and
	// fairness protects it whatever they are.
	KubeAPIQPS   float32
	KubeAPIBurst int
	// AccessReviewTTL is how long a SubjectAccessReview's answer is reused for the same user and
	// permission, by the webhook and the controller (default DefaultAccessReviewTTL; negative:
	// never reused).
	AccessReviewTTL time.Duration
	// PprofBindAddress serves net/http/pprof's profiles; empty or "0" serves none.
	PprofBindAddress string
	// ClusterSecrets are Secrets of Namespace to register as target clusters at start: Secret
	// name to cluster name ("" for the Secret's own).
	ClusterSecrets map[string]string
	// ProtectedNamespaces are the namespaces no execution may target unless its template allows
	// it (spec.allowProtectedNamespaces), checked at admission and before the first attempt.
	// Namespace is always added. Nil means DefaultProtectedNamespaces; an empty, non-nil list
	// protects Namespace alone.
	ProtectedNamespaces []string

	// MetricsBindAddress is the metrics endpoint's address; empty or "0" serves none.
	MetricsBindAddress string
	// HealthProbeBindAddress is the address of /healthz and /readyz; empty or "0" serves none.
	HealthProbeBindAddress string
	// LeaderElection makes replicas elect a leader, so that only one reconciles at a time.
	LeaderElection bool
	// LeaderElectionNamespace holds the leader election lease (default: the namespace
	// controller-runtime finds for the pod).
	LeaderElectionNamespace string

	// Webhooks, when set, serves the admission webhooks with these server options (host, port,
	// certificate folder). Nil runs the controllers alone.
	Webhooks *webhook.Options

	// SkipNameValidation lets one process build several managers whose controllers have the
	// same names (a suite that restarts the manager).
	SkipNameValidation bool
	// NewClient, when set, creates the manager's client (for example one that records writes);
	// controller-runtime's client.New when nil.
	NewClient client.NewClientFunc
}

// DefaultProtectedNamespaces are the namespaces protected when Options.ProtectedNamespaces is
// nil, besides the manager's own: Kubernetes' own namespaces, where an action would touch the
// control plane's and the nodes' workloads.
var DefaultProtectedNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// DefaultAccessReviewTTL is how long a SubjectAccessReview's answer is reused: long enough that a
// burst of executions from one requester asks the API server once per permission, short enough
// that a revoked right is honoured only briefly (the design allows a few seconds, as the API
// server's own webhook authorizer caches its decisions).
const DefaultAccessReviewTTL = 3 * time.Second

// Scheme returns a scheme with the built-in types and the project's.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding the built-in types to the scheme: %w", err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding the executor's types to the scheme: %w", err)
	}
	return s, nil
}

// New returns a manager for cfg with the project's scheme and cache options, the controllers
// registered, and, when opts.Webhooks is set, the webhooks. ctx bounds what the controllers'
// setup does before the manager starts (their field indexes); the caller starts the manager.
func New(ctx context.Context, cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	if opts.Namespace == "" {
		return nil, errors.New("the manager's namespace is not set")
	}
	if opts.CeilingName == "" {
		opts.CeilingName = controllers.DefaultCeilingName
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Random == nil {
		opts.Random = rand.Float64
	}
	scheme, err := Scheme()
	if err != nil {
		return nil, err
	}
	cfg = withRateLimit(cfg, opts.KubeAPIQPS, opts.KubeAPIBurst)
	mgrOpts := ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: disabledWhenEmpty(opts.MetricsBindAddress)},
		HealthProbeBindAddress:  disabledWhenEmpty(opts.HealthProbeBindAddress),
		LeaderElection:          opts.LeaderElection,
		LeaderElectionID:        LeaderElectionID,
		LeaderElectionNamespace: opts.LeaderElectionNamespace,
		// Give the lease up when the manager stops (SIGTERM: a rollout, a drain), so that the
		// standby takes over at its next try, within seconds, instead of waiting out the lease.
		// controller-runtime releases it once the controllers have stopped, and the binary exits
		// as soon as the manager's Start returns (cmd/manager): no replica goes on reconciling
		// after it gave the lease up.
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controllers.CacheOptions(opts.Namespace),
		NewClient:                     opts.NewClient,
		PprofBindAddress:              disabledWhenEmpty(opts.PprofBindAddress),
	}
	if opts.SkipNameValidation {
		mgrOpts.Controller = config.Controller{SkipNameValidation: ptr.To(true)}
	}
	if opts.Webhooks != nil {
		mgrOpts.WebhookServer = webhook.NewServer(*opts.Webhooks)
	}
	mgr, err := ctrl.NewManager(cfg, mgrOpts)
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	// One validator for the controllers and the webhooks: each template's schema compiles once,
	// and both refuse the same protected namespaces.
	validator := &validation.Validator{ProtectedNamespaces: protectedNamespaces(opts.ProtectedNamespaces, opts.Namespace)}
	// One cache of SubjectAccessReview answers for the webhook and the controller.
	ttl := opts.AccessReviewTTL
	if ttl == 0 {
		ttl = DefaultAccessReviewTTL
	}
	reviewer := &access.CachingCreator{Creator: mgr.GetClient(), TTL: ttl, Clock: opts.Clock}
	clusters := &controllers.ClusterRegistry{Register: opts.ClusterSecrets}
	if err := controllers.Setup(ctx, mgr, controllers.Config{
		ExecutorOptions: opts.Executor,
		CeilingName:     opts.CeilingName,
		Namespace:       opts.Namespace,
		Clock:           opts.Clock,
		Random:          opts.Random,
		Validator:       validator,
		SweepInterval:   opts.SweepInterval,
		Audit:           opts.Audit,

		MaxConcurrentReconciles: opts.MaxConcurrentReconciles,
		Events:                  opts.Events,
		Reviewer:                reviewer,
		Clusters:                clusters,
	}); err != nil {
		return nil, fmt.Errorf("setting up the controllers: %w", err)
	}
	if opts.Webhooks != nil {
		if err := webhooks.Setup(mgr, webhooks.Config{Validator: validator, CeilingName: opts.CeilingName, Reviewer: reviewer, Clock: opts.Clock, Clusters: clusters}); err != nil {
			return nil, fmt.Errorf("setting up the webhooks: %w", err)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding the readiness check: %w", err)
	}
	return mgr, nil
}

// protectedNamespaces returns the namespaces the executor protects: listed, or the defaults
// when listed is nil, and always the manager's own, where a compromised action could reach the
// manager's ServiceAccount and certificates.
func protectedNamespaces(listed []string, own string) []string {
	if listed == nil {
		listed = DefaultProtectedNamespaces
	}
	out := make([]string, 0, len(listed)+1)
	for _, ns := range append(slices.Clone(listed), own) {
		if ns != "" && !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	return out
}

// withRateLimit returns a copy of cfg with the client-side rate limit qps and burst, or their
// defaults where they are zero; cfg itself is not changed.
func withRateLimit(cfg *rest.Config, qps float32, burst int) *rest.Config {
	if qps == 0 {
		qps = DefaultKubeAPIQPS
	}
	if burst == 0 {
		burst = DefaultKubeAPIBurst
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = qps, burst
	return cfg
}

// disabledWhenEmpty maps an empty address to "0", which controller-runtime reads as "serve
// nothing" (for metrics it would otherwise read empty as its default, :8080).
func disabledWhenEmpty(addr string) string {
	if addr == "" {
		return "0"
	}
	return addr
}
