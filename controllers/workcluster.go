package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
)

// workCluster is where an execution's work happens: its ServiceAccount, grant, Jobs and pods.
// That is the executor's own cluster, or the registered target cluster its target names
// (spec.action.target.cluster); the execution itself, its template, its status and its audit
// event always stay in the executor's cluster.
type workCluster struct {
	// name is the target cluster's, "" for the executor's own.
	name string
	// cluster is the target cluster, nil for the executor's own.
	cluster *RemoteCluster
	// Client reads from the cluster's cache and writes to it.
	client.Client
	// APIReader reads from the cluster's API server.
	APIReader client.Reader
}

func (w *workCluster) remote() bool { return w.name != "" }

// owns reports whether o (a Job, a ServiceAccount, a grant) is exec's: controlled by it in the
// executor's cluster; labelled with its UID in a target cluster, where no owner reference can
// name an object of another cluster.
func (w *workCluster) owns(o metav1.Object, exec *v1alpha1.KubernetesExecution) bool {
	if !w.remote() {
		return metav1.IsControlledBy(o, exec)
	}
	return o.GetLabels()[v1alpha1.LabelExecutionUID] == string(exec.UID)
}

// clusterUnreachableRetry is how often an execution waiting for its cluster looks again, besides
// being woken when the cluster's readiness changes.
const clusterUnreachableRetry = 10 * time.Second

// workClusterFor returns where obj's work happens. For a target cluster that is registered but
// not connected, it returns nil and why; for one that is not registered, nil, why, and false.
func (r *KubernetesExecutionReconciler) workClusterFor(obj *v1alpha1.KubernetesExecution) (w *workCluster, why string, registered bool) {
	name := obj.Spec.Action.Target.Cluster
	if name == "" {
		return &workCluster{Client: r.Client, APIReader: r.APIReader}, "", true
	}
	var remote *RemoteCluster
	ok := false
	if r.Clusters != nil {
		remote, ok = r.Clusters.Get(name)
	}
	if !ok {
		return nil, fmt.Sprintf("the target cluster %q is not registered: no Secret labelled %s=true in the executor's namespace names it", name, v1alpha1.LabelCluster), false
	}
	ready, message := remote.Ready()
	cl, connected := remote.Cluster()
	if !ready || !connected {
		if message == "" {
			message = "not probed yet"
		}
		return nil, fmt.Sprintf("the target cluster %q is unreachable: %s", name, message), true
	}
	return &workCluster{name: name, cluster: remote, Client: cl.GetClient(), APIReader: cl.GetAPIReader()}, "", true
}

// clusterFailure ends or holds an execution whose target cluster cannot be used: one whose
// cluster is not registered (any more) fails with ClusterNotFound; one whose cluster does not
// answer waits, Ready=False with reason ClusterUnreachable, until it does or its timeout passes.
func (r *KubernetesExecutionReconciler) clusterFailure(ctx context.Context, obj *v1alpha1.KubernetesExecution, why string, registered bool, now time.Time) time.Duration {
	if !registered {
		if a := lastAttempt(obj); a != nil && a.EndTime == nil {
			// Its Job is stopped and deleted if the cluster is registered again (settleEndedJobs).
			a.EndTime, a.Reason, a.Message = &metav1.Time{Time: now}, v1alpha1.ReasonClusterNotFound, why
		}
		failExecution(obj, v1alpha1.ReasonClusterNotFound, why, now)
		return 0
	}
	tpl := &v1alpha1.ActionTemplate{}
	if err := r.Get(ctx, client.ObjectKey{Name: obj.Spec.Action.Type}, tpl); err != nil {
		tpl = &v1alpha1.ActionTemplate{} // the defaults
	}
	// The timeout counts from the first attempt, or, before one, from when the execution began
	// to wait.
	var start time.Time
	switch {
	case obj.Status.StartTime != nil:
		start = obj.Status.StartTime.Time
	case obj.Status.WaitingSince != nil:
		start = obj.Status.WaitingSince.Time
	default:
		obj.Status.WaitingSince = &metav1.Time{Time: now}
		start = now
	}
	timeout := validation.Timeout(obj, tpl)
	if !now.Before(start.Add(timeout)) {
		message := fmt.Sprintf("timed out after %s: %s", timeout, why)
		if a := lastAttempt(obj); a != nil && a.EndTime == nil {
			// Its Job, stopped there by its own deadline, is deleted once the cluster answers
			// (settleEndedJobs), with the grant.
			a.EndTime, a.Reason, a.Message = &metav1.Time{Time: now}, v1alpha1.ReasonTimedOut, message
		}
		failExecution(obj, v1alpha1.ReasonClusterUnreachable, message, now)
		setPhase(obj, v1alpha1.PhaseTimedOut, v1alpha1.ReasonClusterUnreachable, message, now)
		return 0
	}
	phase := obj.Status.Phase
	if phase == "" {
		phase = v1alpha1.PhasePending
	}
	setPhase(obj, phase, v1alpha1.ReasonClusterUnreachable, why, now)
	return min(clusterUnreachableRetry, start.Add(timeout).Sub(now))
}

// markRemote labels a Job for a target cluster, where no owner reference names its execution:
// the execution's UID (its owner, and what the sweep looks for) and, on the Job and its pod,
// its name, by which their events reach the execution.
func markRemote(job *batchv1.Job, obj *v1alpha1.KubernetesExecution) {
	for _, m := range []*metav1.ObjectMeta{&job.ObjectMeta, &job.Spec.Template.ObjectMeta} {
		if m.Labels == nil {
			m.Labels = map[string]string{}
		}
		m.Labels[v1alpha1.LabelExecutionUID] = string(obj.UID)
		m.Labels[v1alpha1.LabelExecutionNamespace] = obj.Namespace
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[v1alpha1.AnnotationExecutionName] = obj.Name
	}
}

// remoteWatches feeds the execution controller from the target clusters: the events of the Jobs
// and pods in each connected cluster's cache, and a wake-up for the executions of a cluster
// whose readiness changed.
type remoteWatches struct {
	controller controller.Controller
	wake       chan event.GenericEvent

	mu      sync.Mutex
	watched map[*RemoteCluster]bool
}

// clusterChanged is the ClusterRegistry's OnChange: it watches a newly connected cluster's Jobs
// and pods, sweeps what executions that no longer exist left there, and wakes the executions
// that target the cluster.
func (r *KubernetesExecutionReconciler) clusterChanged(ctx context.Context, name string) {
	if c, ok := r.Clusters.Get(name); ok {
		if cl, connected := c.Cluster(); connected && r.remote.firstWatch(c) {
			if err := r.watchCluster(c, cl); err != nil {
				log.FromContext(ctx).Error(err, "watching the target cluster", "cluster", name)
			}
			go r.sweepCluster(c, cl) //nolint:gosec // G118: the sweep lasts as long as the connection, not the request that found it.
		}
	}
	list := &v1alpha1.KubernetesExecutionList{}
	if err := r.List(ctx, list); err != nil {
		log.FromContext(ctx).Error(err, "listing the executions of a target cluster", "cluster", name)
		return
	}
	for i := range list.Items {
		e := &list.Items[i]
		if e.Spec.Action.Target.Cluster != name || e.Status.Phase.IsTerminal() && e.DeletionTimestamp.IsZero() &&
			!controllerutil.ContainsFinalizer(e, v1alpha1.GrantFinalizer) {
			continue
		}
		go func() { r.remote.wake <- event.GenericEvent{Object: e} }()
	}
}

// firstWatch reports whether c is a connection not watched yet, and marks it watched.
func (w *remoteWatches) firstWatch(c *RemoteCluster) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.watched == nil {
		w.watched = map[*RemoteCluster]bool{}
	}
	if w.watched[c] {
		return false
	}
	w.watched[c] = true
	return true
}

// watchCluster adds the cluster's Jobs and pods to the controller's sources, for as long as the
// connection lasts.
func (r *KubernetesExecutionReconciler) watchCluster(c *RemoteCluster, cl cluster.Cluster) error {
	if r.remote.controller == nil {
		return nil
	}
	sources := []source.Source{
		source.Kind[client.Object](cl.GetCache(), &batchv1.Job{}, handler.EnqueueRequestsFromMapFunc(remoteExecution), jobEvents),
		source.Kind[client.Object](cl.GetCache(), &corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(remoteExecution), podEvents),
	}
	for _, src := range sources {
		err := r.remote.controller.Watch(source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
			ctx, cancel := context.WithCancel(ctx)
			go func() {
				defer cancel()
				select {
				case <-c.stopped():
				case <-ctx.Done():
				}
				r.remote.forget(c)
			}()
			return src.Start(ctx, q)
		}))
		if err != nil {
			return err
		}
	}
	return nil
}

func (w *remoteWatches) forget(c *RemoteCluster) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.watched, c)
}

// remoteExecution maps a Job or pod in a target cluster to its execution, by the annotation
// markRemote put on it.
func remoteExecution(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetAnnotations()[v1alpha1.AnnotationExecutionName]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
}

// sweepCluster removes from a connected cluster the grants and Jobs of executions that no longer
// exist: deleted while the cluster was unreachable or not registered, or left by a manager that
// stopped between two steps. It sweeps once the connection's cache has synced, then every
// SweepInterval, for as long as the connection lasts.
func (r *KubernetesExecutionReconciler) sweepCluster(c *RemoteCluster, cl cluster.Cluster) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.stopped():
			cancel()
		case <-ctx.Done():
		}
	}()
	if !cl.GetCache().WaitForCacheSync(ctx) {
		return
	}
	interval := r.SweepInterval
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	sweeper := &GrantSweeper{Client: r.Client, APIReader: r.APIReader, Target: cl.GetClient()}
	logger := ctrl.Log.WithName("clusters").WithValues("cluster", c.Name)
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if n, err := sweeper.Sweep(ctx); err != nil && ctx.Err() == nil {
			logger.Error(err, "sweeping the grants of a target cluster")
		} else if n > 0 {
			logger.Info("removed grants and Jobs of executions that no longer exist", "objects", n)
		}
	}, interval)
}
