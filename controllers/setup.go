package controllers

import (
	"context"
	"errors"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

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
}

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
	if err := (&PredefinedTemplateReconciler{
		Client: mgr.GetClient(), Namespace: cfg.Namespace, Recorder: mgr.GetEventRecorder("kubernaut-executor"),
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
	if err := mgr.Add(&GrantSweeper{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Interval: cfg.SweepInterval}); err != nil {
		return err
	}
	if err := (&AuditReconciler{
		Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("kubernaut-executor"), Clock: cfg.Clock, Random: cfg.Random,
		Options: cfg.Audit, ActionImages: cfg.ActionImages,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&KubernetesExecutionReconciler{
		Client:       mgr.GetClient(),
		APIReader:    mgr.GetAPIReader(),
		Recorder:     mgr.GetEventRecorder("kubernaut-executor"),
		Clock:        cfg.Clock,
		Random:       cfg.Random,
		Options:      cfg.ExecutorOptions,
		Validator:    cfg.Validator,
		AuditEnabled: cfg.Audit.Enabled(),
	}).SetupWithManager(ctx, mgr)
}
