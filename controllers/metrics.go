package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// The executor's metrics, served on the manager's metrics endpoint.
var (
	// ExecutionsTotal counts executions that ended, by action and final phase.
	ExecutionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kubernaut_executions_total",
		Help: "Executions that reached a final phase, by action type and phase (Completed, Failed, TimedOut).",
	}, []string{"action", "phase"})
	// ExecutionDuration observes how long ended executions took, start to end.
	ExecutionDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kubernaut_execution_duration_seconds",
		Help:    "Time from an execution's start to its final phase, retries and backoff included.",
		Buckets: prometheus.ExponentialBuckets(0.5, 2, 14),
	}, []string{"action", "phase"})
	// ExecutionAttempts observes how many attempts ended executions made.
	ExecutionAttempts = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kubernaut_execution_attempts",
		Help:    "Attempts (Jobs) an execution made before its final phase.",
		Buckets: []float64{1, 2, 3, 4, 6, 11},
	}, []string{"action", "phase"})
	// ActionCPUSeconds observes the CPU time ended executions' actions reported using.
	ActionCPUSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kubernaut_action_cpu_seconds",
		Help:    "CPU time, user and system, that an action's process and its children used, as the action measured it; one observation per ended execution whose final result reported it.",
		Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"action"})
	// ActionPeakMemoryBytes observes the peak memory ended executions' actions reported using.
	ActionPeakMemoryBytes = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kubernaut_action_peak_memory_bytes",
		Help:    "Peak resident memory of an action's process or its largest child, as the action measured it; one observation per ended execution whose final result reported it.",
		Buckets: prometheus.ExponentialBuckets(8<<20, 2, 9), // 8 MiB to 2 GiB
	}, []string{"action"})
)

func init() {
	metrics.Registry.MustRegister(ExecutionsTotal, ExecutionDuration, ExecutionAttempts, ActionCPUSeconds, ActionPeakMemoryBytes)
}

// recordEnd records an execution that just reached its final phase, and the resource usage its
// final result carries, if any: the measure of the last attempt whose result was read.
func recordEnd(obj *v1alpha1.KubernetesExecution) {
	action, phase := obj.Spec.Action.Type, string(obj.Status.Phase)
	ExecutionsTotal.WithLabelValues(action, phase).Inc()
	ExecutionAttempts.WithLabelValues(action, phase).Observe(float64(len(obj.Status.Attempts)))
	if s, e := obj.Status.StartTime, obj.Status.CompletionTime; s != nil && e != nil {
		ExecutionDuration.WithLabelValues(action, phase).Observe(e.Sub(s.Time).Seconds())
	}
	if r := obj.Status.Result; r != nil && r.ResourceUsage != nil {
		ActionCPUSeconds.WithLabelValues(action).Observe(float64(r.ResourceUsage.CPUMillis) / 1000)
		ActionPeakMemoryBytes.WithLabelValues(action).Observe(float64(r.ResourceUsage.PeakMemoryBytes))
	}
}
