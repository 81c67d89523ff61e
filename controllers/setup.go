package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/kubernaut/kubernaut-executor/internal/access"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
)

// Config is what the manager passes to its controllers.
type Config struct {
	ExecutorOptions
	// CeilingName is the aggregated ClusterRole that bounds every template's rules.
	CeilingName string
	// Namespace is the manager's own namespace (the Helm release's): the predefined actions'
	// ConfigMaps are read there and nowhere else. It must match the namespace given to
	// CacheOptions.
	Namespace string
	// Clock is the time source for timeouts and backoff.
	Clock clock.PassiveClock
	// Random returns a number in [0, 1) for backoff jitter.
	Random func() float64
	// Validator is shared with the webhooks, so that each template's schema is compiled once.
	Validator *validation.Validator
	// SweepInterval is how often grants whose execution is gone are removed (default
	// DefaultSweepInterval).
	SweepInterval time.Duration
	// Audit says where executions' audit events go.
	Audit AuditOptions
	// MaxConcurrentReconciles is how many executions are reconciled at once (default
	// DefaultMaxConcurrentReconciles). One execution is never reconciled by two workers at once.
	MaxConcurrentReconciles int
	// Events says which Events the controllers record (default EventsAll).
	Events EventVolume
	// Reviewer answers the SubjectAccessReviews before each attempt (the manager's client when
	// nil).
	Reviewer access.Creator
	// Clusters, when set, is the registry of target clusters to fill in and run (the webhooks
	// share it); Setup makes one otherwise.
	Clusters *ClusterRegistry
}

// DefaultMaxConcurrentReconciles is how many executions are reconciled at once unless the
// manager says otherwise. A reconcile spends most of its time waiting on the API server (the
// SubjectAccessReviews, the grant's and the Job's creation, the status patch: a few milliseconds
// each), not on the CPU, so one worker leaves the manager idle while executions queue up. Eight
// keep eight such round trips in flight, which a small cluster's API server absorbs easily and
// the chart's default CPU limit (500m) sustains; past that, the client's rate limit (see the
// manager's --kube-api-qps) and the API server's priority and fairness bound the load, not the
// number of workers.
const DefaultMaxConcurrentReconciles = 8

// Setup registers the executor's controllers with mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, cfg Config) error {
	if cfg.CeilingName == "" {
		cfg.CeilingName = DefaultCeilingName
	}
	if cfg.Validator == nil {
		cfg.Validator = &validation.Validator{}
	}
	if cfg.Namespace == "" {
		return errors.New("the manager's namespace is not set")
	}
	if cfg.MaxConcurrentReconciles <= 0 {
		cfg.MaxConcurrentReconciles = DefaultMaxConcurrentReconciles
	}
	if cfg.Events != "" {
		if _, err := ParseEventVolume(string(cfg.Events)); err != nil {
			return fmt.Errorf("which Events to record: %w", err)
		}
	}
	// The one recorder of every controller: --events applies to all of them.
	recorder := cfg.Events.Recorder(mgr.GetEventRecorder("kubernaut-executor"))
	if err := (&PredefinedTemplateReconciler{
		Client: mgr.GetClient(), Namespace: cfg.Namespace, Recorder: recorder,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&ActionTemplateReconciler{
		Client: mgr.GetClient(), CeilingName: cfg.CeilingName,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if err := indexExecutionUIDs(ctx, mgr); err != nil {
		return err
	}
	if err := mgr.Add(&GrantSweeper{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Interval: cfg.SweepInterval}); err != nil {
		return err
	}
	clusters := cfg.Clusters
	if clusters == nil {
		clusters = &ClusterRegistry{}
	}
	clusters.Client, clusters.APIReader, clusters.Namespace, clusters.Scheme, clusters.Recorder = mgr.GetClient(), mgr.GetAPIReader(), cfg.Namespace, mgr.GetScheme(), recorder
	// Each target cluster gets the manager's own rate limit: with client-go's default (5 requests
	// per second) a target would take two executions per second at most.
	clusters.QPS, clusters.Burst = mgr.GetConfig().QPS, mgr.GetConfig().Burst
	if err := (&AuditReconciler{
		Client: mgr.GetClient(), Recorder: recorder, Clock: cfg.Clock,
		Options: cfg.Audit, ActionImages: cfg.ActionImages,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	executions := &KubernetesExecutionReconciler{
		Client:       mgr.GetClient(),
		APIReader:    mgr.GetAPIReader(),
		Recorder:     recorder,
		Clock:        cfg.Clock,
		Random:       cfg.Random,
		Options:      cfg.ExecutorOptions,
		Validator:    cfg.Validator,
		AuditEnabled: cfg.Audit.Enabled(),

		MaxConcurrentReconciles: cfg.MaxConcurrentReconciles,
		Reviewer:                cfg.Reviewer,
		Clusters:                clusters,
		SweepInterval:           cfg.SweepInterval,
	}
	if err := executions.SetupWithManager(ctx, mgr); err != nil {
		return err
	}
	clusters.OnChange = func(name string) { executions.clusterChanged(ctx, name) }
	return clusters.SetupWithManager(mgr)
}
