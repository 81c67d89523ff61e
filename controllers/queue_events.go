package controllers

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// queueEvents wakes the executions that wait in the gate when another execution starts, ends or
// goes: a slot, a target or a place in the order may have come free. Only they are woken (the
// waiting index), as new work, behind the work of started executions.
func (r *KubernetesExecutionReconciler) queueEvents() handler.TypedEventHandler[client.Object, reconcile.Request] {
	wake := func(ctx context.Context, changed client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		list := &v1alpha1.KubernetesExecutionList{}
		if err := r.List(ctx, list, client.MatchingFields{queueStateIndex: "waiting"}, client.UnsafeDisableDeepCopy); err != nil {
			return
		}
		for i := range list.Items {
			if e := &list.Items[i]; e.UID != changed.GetUID() && waitingReason(e) != "" {
				enqueue(q, requestFor(e), priorityNew)
			}
		}
	}
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if !equalStrings(queueState(e.ObjectOld), queueState(e.ObjectNew)) {
				wake(ctx, e.ObjectNew, q)
			}
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			wake(ctx, e.Object, q)
		},
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// waitingReaders are the execution reconcilers of the managers running in the process (one, but
// for suites that run several), whose caches the waiting gauge reads.
var waitingReaders sync.Map

// waitingDesc is the gauge of executions held by the gate, by reason and action, counted from
// the cache when scraped: it is right after a restart, and costs nothing between scrapes.
var waitingDesc = prometheus.NewDesc("kubernaut_executions_waiting",
	"Executions waiting to start, by reason (AwaitingApproval, TargetBusy, QueueFull, RateLimited) and action.",
	[]string{"reason", "action"}, nil)

type waitingCollector struct{}

func (waitingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- waitingDesc }

func (waitingCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[[2]string]int{}
	waitingReaders.Range(func(k, _ any) bool {
		r := k.(*KubernetesExecutionReconciler)
		list := &v1alpha1.KubernetesExecutionList{}
		if err := r.List(context.Background(), list, client.MatchingFields{queueStateIndex: "waiting"}, client.UnsafeDisableDeepCopy); err != nil {
			return true
		}
		for i := range list.Items {
			if reason := waitingReason(&list.Items[i]); reason != "" {
				counts[[2]string{reason, list.Items[i].Spec.Action.Type}]++
			}
		}
		return true
	})
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(waitingDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
}

func init() { metrics.Registry.MustRegister(waitingCollector{}) }
