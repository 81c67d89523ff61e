package controllers

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// CacheOptions limits the manager's cache of Jobs, pods, ServiceAccounts and RBAC objects to the
// ones the executor created (and of pods to those that have not finished), so its memory does not grow with the cluster's other workloads,
// and its cache of ConfigMaps to the predefined actions' ConfigMaps in namespace, the manager's
// own: no ConfigMap anywhere else is ever read. namespace must not be empty (Setup refuses an
// empty Config.Namespace): for the cache, empty means every namespace.
//
// Every cached object is stored without its managedFields, which the executor never reads and
// which are often the largest part of an object; cached pods and Jobs also without what the
// executor never reads of them (see TrimPod and TrimJob). A cached pod or Job is therefore never
// written back (the executor only creates and deletes Jobs, and never writes pods).
func CacheOptions(namespace string) cache.Options {
	managed := labels.SelectorFromSet(labels.Set{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue})
	hasAction, err := labels.NewRequirement(v1alpha1.LabelPredefinedAction, selection.Exists, nil)
	if err != nil {
		panic(err) // the key is a valid constant
	}
	predefined := labels.NewSelector().Add(*hasAction)
	// ClusterRoles: the executor's own and the ceiling, which the chart or an administrator
	// creates; all are part of the executor.
	partOf := labels.SelectorFromSet(labels.Set{v1alpha1.LabelPartOf: v1alpha1.PartOfValue})
	return cache.Options{
		// A ByObject Transform replaces this default for its type, so TrimPod and TrimJob strip
		// the managedFields too.
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&batchv1.Job{}:               {Label: managed, Transform: transform(TrimJob)},
			&corev1.Pod{}:                {Label: managed, Field: unfinishedPods, Transform: transform(TrimPod)},
			&corev1.ServiceAccount{}:     {Label: managed},
			&rbacv1.Role{}:               {Label: managed},
			&rbacv1.RoleBinding{}:        {Label: managed},
			&rbacv1.ClusterRole{}:        {Label: partOf},
			&rbacv1.ClusterRoleBinding{}: {Label: managed},
			&corev1.ConfigMap{}: {
				Namespaces: map[string]cache.Config{namespace: {}},
				Label:      predefined,
			},
			// The target clusters' credentials (ClusterRegistry): no other Secret is cached.
			&corev1.Secret{}: {
				Namespaces: map[string]cache.Config{namespace: {}},
				Label:      labels.SelectorFromSet(labels.Set{v1alpha1.LabelCluster: "true"}),
			},
		},
	}
}

// unfinishedPods selects the pods that still run or wait to: the cache holds an action's pod only
// until it ends (the API server's watch reports it as deleted then), since the executor reads a
// running pod (an image it cannot pull) but a finished one only once, when its Job has finished,
// and then from the API server. A finished pod is kept on the cluster for --job-ttl with its
// Job; without this selector the manager would hold every one of them in memory as long.
var unfinishedPods = fields.AndSelectors(
	fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
	fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed)),
)

// transform applies trim to the objects of its type that enter the cache, and leaves anything
// else (an informer's tombstone) as it is.
func transform[T any](trim func(*T) *T) toolscache.TransformFunc {
	return func(in any) (any, error) {
		if obj, ok := in.(*T); ok {
			return trim(obj), nil
		}
		return in, nil
	}
}

// TrimPod returns the part of a Job's pod that the executor reads, as the cache keeps it: the
// identity, labels (the Job's name and controller UID, by which pods are found), owner references
// (IsControlledBy), deletion state, the phase, and of each container its name, image and state,
// where a kubelet reports an image it cannot pull and the action's termination message and exit
// code. Everything else is dropped: the spec (the action's environment, up to the 32 KiB of its
// parameters, the volumes, the security context), the annotations, the managedFields, the pod's
// conditions and addresses, and the containers' IDs, counters and resources. The cache holds a
// pod for as long as its Job is kept (--job-ttl), long after the executor last read it, so every
// field counts. pod is not changed.
func TrimPod(pod *corev1.Pod) *corev1.Pod {
	var statuses []corev1.ContainerStatus
	if len(pod.Status.ContainerStatuses) > 0 {
		statuses = make([]corev1.ContainerStatus, len(pod.Status.ContainerStatuses))
		for i, cs := range pod.Status.ContainerStatuses {
			statuses[i] = corev1.ContainerStatus{Name: cs.Name, Image: cs.Image, State: cs.State}
		}
	}
	return &corev1.Pod{
		TypeMeta:   pod.TypeMeta,
		ObjectMeta: trimMeta(pod.ObjectMeta),
		Status:     corev1.PodStatus{Phase: pod.Status.Phase, ContainerStatuses: statuses},
	}
}

// TrimJob returns the part of an attempt's Job that the executor reads, as the cache keeps it:
// the identity, labels, owner references and deletion state, whether its TTL is set (the
// executor sets it once the attempt's outcome is recorded), and of the status the start, the
// completion, the counts of pods and the Complete and Failed conditions (with their reason, the
// attempt's). The rest of the spec, which holds the pod template with the action's environment
// and parameters and is most of a Job, is dropped (the executor made it, and never reads it
// back), and so are the annotations, managedFields and the rest of the status. job is not
// changed.
func TrimJob(job *batchv1.Job) *batchv1.Job {
	var conditions []batchv1.JobCondition
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed {
			conditions = append(conditions, c)
		}
	}
	spec := batchv1.JobSpec{TTLSecondsAfterFinished: job.Spec.TTLSecondsAfterFinished}
	return &batchv1.Job{TypeMeta: job.TypeMeta, ObjectMeta: trimMeta(job.ObjectMeta), Spec: spec, Status: batchv1.JobStatus{
		Conditions: conditions,
		StartTime:  job.Status.StartTime, CompletionTime: job.Status.CompletionTime,
		Active: job.Status.Active, Succeeded: job.Status.Succeeded, Failed: job.Status.Failed,
	}}
}

// trimMeta keeps what the executor reads of a Job's or pod's metadata, and what the cache and
// the informers need (name, namespace, UID, resourceVersion).
func trimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	var annotations map[string]string
	if name, ok := m.Annotations[v1alpha1.AnnotationExecutionName]; ok {
		// How a Job or pod in a target cluster names its execution (markRemote).
		annotations = map[string]string{v1alpha1.AnnotationExecutionName: name}
	}
	return metav1.ObjectMeta{
		Annotations:                annotations,
		Name:                       m.Name,
		Namespace:                  m.Namespace,
		UID:                        m.UID,
		ResourceVersion:            m.ResourceVersion,
		Generation:                 m.Generation,
		CreationTimestamp:          m.CreationTimestamp,
		DeletionTimestamp:          m.DeletionTimestamp,
		DeletionGracePeriodSeconds: m.DeletionGracePeriodSeconds,
		Labels:                     m.Labels,
		OwnerReferences:            m.OwnerReferences,
		Finalizers:                 m.Finalizers,
	}
}
