package controllers

import (
	"context"
	"reflect"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// actionPod is an action's pod as the API server serves it once its action has ended: what the
// executor reads (labels, owner, the action container's terminated state) and much it does not.
func actionPod() *corev1.Pod {
	now := metav1.NewTime(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ops", Name: "fix-1-abcde", GenerateName: "fix-1-", UID: "pod-uid", ResourceVersion: "42",
			CreationTimestamp: now, DeletionTimestamp: &now, DeletionGracePeriodSeconds: ptr.To[int64](10),
			Labels: map[string]string{
				batchv1.JobNameLabel: "fix-1", batchv1.ControllerUidLabel: "job-uid", v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
			},
			Annotations:     map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{}"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "fix-1", UID: "job-uid", Controller: ptr.To(true)}},
			Finalizers:      []string{batchv1.JobTrackingFinalizer},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate}},
		},
		Spec: corev1.PodSpec{
			NodeName:           "node-1",
			ServiceAccountName: "kubernaut-exec-fix",
			Containers: []corev1.Container{{
				Name: ActionContainerName, Image: "kubernaut-actions:v1",
				Env: []corev1.EnvVar{{Name: v1alpha1.EnvActionParameters, Value: `{"replicas":3}`}},
			}},
			Volumes: []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
		Status: corev1.PodStatus{
			Phase:      corev1.PodSucceeded,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "PodCompleted"}},
			Message:    "done", Reason: "Completed", StartTime: &now,
			HostIP: "10.0.0.1", PodIP: "10.1.0.7", PodIPs: []corev1.PodIP{{IP: "10.1.0.7"}}, QOSClass: corev1.PodQOSBurstable,
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: ActionContainerName, Image: "kubernaut-actions:v1", ImageID: "sha256:1",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: 0, Reason: "Completed", Message: `{"success":true,"output":"scaled"}`, FinishedAt: now,
				}},
			}},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init"}},
		},
	}
}

// TestTrimPodKeepsWhatTheExecutorReads checks the cached pod field by field: what the executor
// reads of a pod (jobPods, terminatedState, observeAttempt, podToExecution, podEvents) is kept
// as it was; the spec but its node, the annotations, the managedFields and the status it does
// not read are gone.
func TestTrimPodKeepsWhatTheExecutorReads(t *testing.T) {
	pod := actionPod()
	orig := pod.DeepCopy()
	got := TrimPod(pod)
	if !reflect.DeepEqual(pod, orig) {
		t.Fatal("TrimPod changed its argument")
	}

	// Kept: identity, the labels and owner that find a Job's pods, deletion, and the status read.
	if got.TypeMeta != pod.TypeMeta || got.Name != pod.Name || got.Namespace != pod.Namespace || got.UID != pod.UID ||
		got.ResourceVersion != pod.ResourceVersion || !got.CreationTimestamp.Equal(&pod.CreationTimestamp) {
		t.Errorf("identity %+v", got.ObjectMeta)
	}
	if !reflect.DeepEqual(got.Labels, pod.Labels) || !reflect.DeepEqual(got.OwnerReferences, pod.OwnerReferences) ||
		!reflect.DeepEqual(got.Finalizers, pod.Finalizers) || !got.DeletionTimestamp.Equal(pod.DeletionTimestamp) ||
		*got.DeletionGracePeriodSeconds != 10 {
		t.Errorf("labels, owner, finalizers or deletion lost: %+v", got.ObjectMeta)
	}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "fix-1", UID: "job-uid"}}
	if !metav1.IsControlledBy(got, job) || got.Labels[batchv1.ControllerUidLabel] != "job-uid" || got.Labels[batchv1.JobNameLabel] != "fix-1" {
		t.Error("the cached pod is no longer found as its Job's")
	}
	if got.Status.Phase != corev1.PodSucceeded || len(got.Status.ContainerStatuses) != 1 ||
		got.Status.ContainerStatuses[0].Name != ActionContainerName || got.Status.ContainerStatuses[0].Image != "kubernaut-actions:v1" {
		t.Errorf("status %+v", got.Status)
	}
	term := got.Status.ContainerStatuses[0].State.Terminated
	if term == nil || term.ExitCode != 0 || term.Message != `{"success":true,"output":"scaled"}` {
		t.Errorf("the action's termination state is lost: %+v", term)
	}

	// Dropped: everything else.
	want := &corev1.Pod{
		TypeMeta: pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
			CreationTimestamp: pod.CreationTimestamp, DeletionTimestamp: pod.DeletionTimestamp, DeletionGracePeriodSeconds: pod.DeletionGracePeriodSeconds,
			Labels: pod.Labels, OwnerReferences: pod.OwnerReferences, Finalizers: pod.Finalizers,
		},
		Status: corev1.PodStatus{
			Phase: pod.Status.Phase,
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: ActionContainerName, Image: "kubernaut-actions:v1", State: pod.Status.ContainerStatuses[0].State,
			}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("cached pod\n%+v\nwant exactly\n%+v", got, want)
	}
	// What the executor reads of a pod still reads the same on the trimmed one.
	if imagePullFailed(got) != nil || imagePullFailed(waitingOnImage(got)) == nil {
		t.Error("a trimmed pod no longer shows whether its image can be pulled")
	}
}

// waitingOnImage returns pod with its action container waiting on an image it cannot pull.
func waitingOnImage(pod *corev1.Pod) *corev1.Pod {
	out := pod.DeepCopy()
	out.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "not found"}}
	return TrimPod(out)
}

// TestTrimJobKeepsWhatTheExecutorReads: a cached Job keeps its identity, labels, owner, deletion
// state and the status the executor reads (observeAttempt, stopAbandonedJobs, podToExecution,
// jobEvents), and loses its spec, annotations, managedFields and the conditions it never reads.
func TestTrimJobKeepsWhatTheExecutorReads(t *testing.T) {
	exec := &v1alpha1.KubernetesExecution{ObjectMeta: metav1.ObjectMeta{Name: "fix", UID: "exec-uid"}}
	now := metav1.NewTime(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ops", Name: "fix-1", UID: "job-uid", ResourceVersion: "7",
			Labels:          map[string]string{v1alpha1.LabelExecution: "fix", v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue},
			Annotations:     map[string]string{"batch.kubernetes.io/job-tracking": ""},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "KubernetesExecution", Name: "fix", UID: "exec-uid", Controller: ptr.To(true)}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubernaut-executor"}},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0), ActiveDeadlineSeconds: ptr.To[int64](300), TTLSecondsAfterFinished: ptr.To[int32](3600),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: ActionContainerName, Env: []corev1.EnvVar{{Name: v1alpha1.EnvActionParameters, Value: `{"replicas":3}`}},
			}}}},
		},
		Status: batchv1.JobStatus{
			StartTime: &now, CompletionTime: &now, Succeeded: 1,
			Conditions: []batchv1.JobCondition{
				{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
			},
			Ready: ptr.To[int32](0), Terminating: ptr.To[int32](0),
			UncountedTerminatedPods: &batchv1.UncountedTerminatedPods{},
		},
	}
	orig := job.DeepCopy()
	got := TrimJob(job)
	if !reflect.DeepEqual(job, orig) {
		t.Fatal("TrimJob changed its argument")
	}
	if !metav1.IsControlledBy(got, exec) || got.Name != "fix-1" || got.UID != "job-uid" || !reflect.DeepEqual(got.Labels, job.Labels) {
		t.Errorf("identity, labels or owner lost: %+v", got.ObjectMeta)
	}
	wantStatus := batchv1.JobStatus{StartTime: &now, CompletionTime: &now, Succeeded: 1, Conditions: job.Status.Conditions[1:]}
	if !reflect.DeepEqual(got.Status, wantStatus) || jobFinishedCondition(got) == nil {
		t.Errorf("status %+v, want %+v", got.Status, wantStatus)
	}
	if !reflect.DeepEqual(got.Spec, batchv1.JobSpec{TTLSecondsAfterFinished: ptr.To[int32](3600)}) || got.Annotations != nil || got.ManagedFields != nil {
		t.Errorf("kept the spec, annotations or managedFields: %+v", got)
	}
}

// TestTheCacheStoresTrimmedObjects builds the cache from CacheOptions, as the manager does, fed
// from memory instead of an API server, and reads back what it stored: pods and Jobs trimmed,
// every other object (here an execution and a Role) without its managedFields and otherwise whole.
func TestTheCacheStoresTrimmedObjects(t *testing.T) {
	pod := actionPod()
	exec := &v1alpha1.KubernetesExecution{ObjectMeta: metav1.ObjectMeta{
		Namespace: "ops", Name: "fix", UID: "exec-uid", ResourceVersion: "3",
		Annotations:   map[string]string{"note": "kept"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}},
	}, Spec: v1alpha1.KubernetesExecutionSpec{Action: v1alpha1.ActionSpec{Type: "scale"}}}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{
		Namespace: "ops", Name: "grant", ResourceVersion: "4", Labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubernaut-executor"}},
	}, Rules: []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get"}}}}
	c := memoryCache(t, CacheOptions("kubernaut-system"), map[string]runtime.Object{
		"Pod":                 &corev1.PodList{Items: []corev1.Pod{*pod}},
		"KubernetesExecution": &v1alpha1.KubernetesExecutionList{Items: []v1alpha1.KubernetesExecution{*exec}},
		"Role":                &rbacv1.RoleList{Items: []rbacv1.Role{*role}},
	})
	ctx := context.Background()

	gotPod := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(pod), gotPod); err != nil {
		t.Fatal(err)
	}
	wantPod := TrimPod(pod)
	gotPod.TypeMeta, wantPod.TypeMeta = metav1.TypeMeta{}, metav1.TypeMeta{}
	if !reflect.DeepEqual(gotPod, wantPod) {
		t.Errorf("cached pod\n%+v\nwant\n%+v", gotPod, wantPod)
	}
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace("ops"), client.MatchingLabels{batchv1.ControllerUidLabel: "job-uid"}); err != nil || len(pods.Items) != 1 {
		t.Errorf("a Job's pods by its controller UID: %d, %v", len(pods.Items), err)
	}

	gotExec := &v1alpha1.KubernetesExecution{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(exec), gotExec); err != nil {
		t.Fatal(err)
	}
	if gotExec.ManagedFields != nil || gotExec.Annotations["note"] != "kept" || gotExec.Spec.Action.Type != "scale" {
		t.Errorf("cached execution %+v", gotExec.ObjectMeta)
	}
	gotRole := &rbacv1.Role{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(role), gotRole); err != nil {
		t.Fatal(err)
	}
	if gotRole.ManagedFields != nil || !reflect.DeepEqual(gotRole.Rules, role.Rules) {
		t.Errorf("cached Role %+v", gotRole)
	}
}

// memoryCache starts a cache with opts whose informers list the given objects by kind (and
// nothing for any other kind) and then watch nothing.
func memoryCache(t *testing.T, opts cache.Options, lists map[string]runtime.Object) cache.Cache {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	mapper := meta.NewDefaultRESTMapper(nil)
	for _, gvk := range []struct {
		obj   runtime.Object
		scope meta.RESTScope
	}{
		{&corev1.Pod{}, meta.RESTScopeNamespace}, {&corev1.ConfigMap{}, meta.RESTScopeNamespace}, {&corev1.Secret{}, meta.RESTScopeNamespace},
		{&corev1.ServiceAccount{}, meta.RESTScopeNamespace}, {&batchv1.Job{}, meta.RESTScopeNamespace},
		{&rbacv1.Role{}, meta.RESTScopeNamespace}, {&rbacv1.RoleBinding{}, meta.RESTScopeNamespace},
		{&rbacv1.ClusterRole{}, meta.RESTScopeRoot}, {&rbacv1.ClusterRoleBinding{}, meta.RESTScopeRoot},
		{&v1alpha1.KubernetesExecution{}, meta.RESTScopeNamespace}, {&v1alpha1.ActionTemplate{}, meta.RESTScopeRoot},
	} {
		kinds, _, err := scheme.ObjectKinds(gvk.obj)
		if err != nil {
			t.Fatal(err)
		}
		mapper.Add(kinds[0], gvk.scope)
	}
	opts.Scheme, opts.Mapper = scheme, mapper
	opts.NewInformer = func(_ toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
		kinds, _, err := scheme.ObjectKinds(obj)
		if err != nil {
			panic(err)
		}
		list := lists[kinds[0].Kind]
		if list == nil {
			list = &metav1.List{}
		}
		return toolscache.NewSharedIndexInformer(listThenWatch{&toolscache.ListWatch{
			ListWithContextFunc:  func(context.Context, metav1.ListOptions) (runtime.Object, error) { return list.DeepCopyObject(), nil },
			WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return watch.NewFake(), nil },
		}}, obj, resync, indexers)
	}
	c, err := cache.New(&rest.Config{Host: "https://127.0.0.1:1"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = c.Start(ctx) }()
	for _, obj := range []client.Object{&corev1.Pod{}, &v1alpha1.KubernetesExecution{}, &rbacv1.Role{}} {
		if _, err := c.GetInformer(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("the cache did not sync")
	}
	return c
}

// listThenWatch lists and then watches: it does not stream the initial list as a watch (the
// reflector's watch-list mode), which only an API server does.
type listThenWatch struct{ *toolscache.ListWatch }

func (listThenWatch) IsWatchListSemanticsUnSupported() bool { return true }

// TestCacheTransformsLeaveTombstonesAlone: an informer may hand a transform what is not an
// object of its type (a deleted object's tombstone); it passes through unchanged.
func TestCacheTransformsLeaveTombstonesAlone(t *testing.T) {
	opts := CacheOptions("kubernaut-system")
	tomb := toolscache.DeletedFinalStateUnknown{Key: "ops/fix-1", Obj: actionPod()}
	for obj, by := range opts.ByObject {
		if _, ok := obj.(*corev1.Pod); !ok {
			if _, ok := obj.(*batchv1.Job); !ok {
				continue
			}
		}
		if by.Transform == nil {
			t.Fatalf("%T has no transform", obj)
		}
		out, err := by.Transform(tomb)
		if err != nil || !reflect.DeepEqual(out, tomb) {
			t.Errorf("%T: a tombstone became %+v (%v)", obj, out, err)
		}
	}
	if opts.DefaultTransform == nil {
		t.Fatal("no default transform: managedFields are cached")
	}
}
