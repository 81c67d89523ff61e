package controllers

import (
	"reflect"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// What keeps the executor cheap under load, tested without an API server: the template read
// without a copy stays untouched, no-op passes decide no change, Events can be limited to
// warnings, and the watches let through only the events that can change an execution.

// TestBuildJobSharesNothingWithTheTemplate: the reconciler reads the template from the cache
// without a copy, so the Job built from it must own every map, slice and pointer it holds (the
// API server's answer to its creation is decoded into them): changing all of the Job's leaves the
// template as it was.
func TestBuildJobSharesNothingWithTheTemplate(t *testing.T) {
	obj := &v1alpha1.KubernetesExecution{
		ObjectMeta: metav1.ObjectMeta{Name: "fix", Namespace: "ops"},
		Spec: v1alpha1.KubernetesExecutionSpec{Action: v1alpha1.ActionSpec{
			Type: "act", Parameters: &apiextensionsv1.JSON{Raw: []byte(`{"replicas":3}`)},
			Target: v1alpha1.TargetSpec{Namespace: "prod", ResourceKind: "Deployment", ResourceName: "web"},
		}},
	}
	tpl := &v1alpha1.ActionTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "act"},
		Spec: v1alpha1.ActionTemplateSpec{
			Image: "kubernaut-actions", Command: []string{"/act"}, Args: []string{"--replicas={{ .Parameters.replicas }}", "plain"},
			Env:        []v1alpha1.TemplatedEnvVar{{Name: "MODE", Value: "fast"}},
			Parameters: &apiextensionsv1.JSON{Raw: []byte(`{"type":"object","properties":{"replicas":{"type":"integer"}}}`)},
			Resources: &corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("20m")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
			},
		},
	}
	cached := tpl.DeepCopy()
	defaults := defaultResources.DeepCopy()
	for _, tp := range []*v1alpha1.ActionTemplate{tpl, {ObjectMeta: tpl.ObjectMeta, Spec: v1alpha1.ActionTemplateSpec{Image: "kubernaut-actions"}}} {
		job, err := buildJob(jobInput{Execution: obj, Template: tp, Attempt: 1, Remaining: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		c := &job.Spec.Template.Spec.Containers[0]
		for _, list := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
			for k := range list {
				list[k] = resource.MustParse("999")
			}
			list["changed"] = resource.MustParse("1")
		}
		for i := range c.Command {
			c.Command[i] = "changed"
		}
		for i := range c.Args {
			c.Args[i] = "changed"
		}
		for i := range c.Env {
			c.Env[i].Value = "changed"
		}
	}
	if !equality.Semantic.DeepEqual(tpl, cached) {
		t.Errorf("changing the Job changed the template:\n%+v\nwas\n%+v", tpl.Spec, cached.Spec)
	}
	if !equality.Semantic.DeepEqual(&defaultResources, defaults) {
		t.Errorf("changing a Job changed the default resources of every Job: %+v", defaultResources)
	}
}

// TestDecideChangesNothingWhileTheAttemptRuns: once an attempt's Job is created and recorded,
// the passes that follow while it runs (its start, its pod's progress, the requeue of a stale
// copy) decide exactly the status already stored, so writeStatus writes nothing; the Job's start
// is recorded with the attempt's end.
func TestDecideChangesNothingWhileTheAttemptRuns(t *testing.T) {
	tpl := &v1alpha1.ActionTemplate{ObjectMeta: metav1.ObjectMeta{Name: "act"}, Spec: v1alpha1.ActionTemplateSpec{
		DefaultTimeout: &metav1.Duration{Duration: time.Hour},
	}}
	obj := &v1alpha1.KubernetesExecution{ObjectMeta: metav1.ObjectMeta{Name: "fix", Generation: 1}}
	started := t0
	obj.Status.StartTime = &metav1.Time{Time: started}
	startedAttempt(obj, nil, 1, "fix-1", started)
	obj.Status.ObservedGeneration = obj.Generation
	stored := roundTrip(t, obj) // what the API server stores: times to the second

	jobStart := metav1.NewTime(t0.Add(2 * time.Second))
	for _, f := range []*attemptFacts{
		{},                     // the Job has not started yet
		{StartTime: &jobStart}, // the Job started; its pod runs
	} {
		for _, later := range []time.Duration{time.Second, time.Minute} {
			d := decide(stored, observation{Now: t0.Add(later), Template: tpl, Attempt: f}, tableJobs)
			d.Status.ObservedGeneration = stored.Generation
			if !equality.Semantic.DeepEqual(d.Status, stored.Status) {
				t.Errorf("facts %+v at +%s: the status changed from\n%+v\nto\n%+v", f, later, stored.Status, d.Status)
			}
			if d.StartAttempt != 0 || d.RequeueAfter != time.Hour-later {
				t.Errorf("start attempt %d, requeue after %s: want none, and the timeout", d.StartAttempt, d.RequeueAfter)
			}
		}
	}

	// The end records the Job's start and end in one write.
	end := metav1.NewTime(t0.Add(5 * time.Second))
	d := decide(stored, observation{Now: end.Time, Template: tpl, Attempt: &attemptFacts{
		StartTime: &jobStart, CompletionTime: &end, Finished: finished(batchv1.JobComplete, "Completed", end.Time),
		Terminated: terminated(0, `{"success":true}`),
	}}, tableJobs)
	if a := d.Status.Attempts[0]; !a.StartTime.Equal(&jobStart) || !a.EndTime.Equal(&end) || d.Status.Phase != v1alpha1.PhaseCompleted {
		t.Errorf("attempt %+v, phase %s", a, d.Status.Phase)
	}

	// So does a timeout that stops the running attempt.
	late := t0.Add(2 * time.Hour)
	d = decide(stored, observation{Now: late, Template: tpl, Attempt: &attemptFacts{StartTime: &jobStart}}, tableJobs)
	if a := d.Status.Attempts[0]; !a.StartTime.Equal(&jobStart) || a.Reason != v1alpha1.ReasonTimedOut || d.Status.Phase != v1alpha1.PhaseTimedOut {
		t.Errorf("timed out attempt %+v, phase %s", a, d.Status.Phase)
	}
}

// roundTrip returns obj as the API server returns it once stored: JSON, times to the second.
func roundTrip(t *testing.T, obj *v1alpha1.KubernetesExecution) *v1alpha1.KubernetesExecution {
	t.Helper()
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	out := &v1alpha1.KubernetesExecution{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, out); err != nil {
		t.Fatal(err)
	}
	return out
}

type recorded struct{ eventtype, reason string }

type recorder struct{ events []recorded }

func (r *recorder) Eventf(_, _ runtime.Object, eventtype, reason, _, _ string, _ ...any) {
	r.events = append(r.events, recorded{eventtype, reason})
}

func TestEventVolume(t *testing.T) {
	for _, tt := range []struct {
		flag string
		want []recorded
	}{
		{"all", []recorded{{corev1.EventTypeNormal, v1alpha1.ReasonSucceeded}, {corev1.EventTypeWarning, v1alpha1.ReasonBackingOff}}},
		{"warnings", []recorded{{corev1.EventTypeWarning, v1alpha1.ReasonBackingOff}}},
	} {
		v, err := ParseEventVolume(tt.flag)
		if err != nil {
			t.Fatal(err)
		}
		r := &recorder{}
		rec := v.Recorder(r)
		rec.Eventf(&v1alpha1.KubernetesExecution{}, nil, corev1.EventTypeNormal, v1alpha1.ReasonSucceeded, "Completed", "done")
		rec.Eventf(&v1alpha1.KubernetesExecution{}, nil, corev1.EventTypeWarning, v1alpha1.ReasonBackingOff, "Retrying", "again")
		if !reflect.DeepEqual(r.events, tt.want) {
			t.Errorf("--events=%s recorded %v, want %v", tt.flag, r.events, tt.want)
		}
	}
	if r := (&recorder{}); EventVolume("").Recorder(r) != r {
		t.Error("the zero value does not record everything")
	}
	if _, err := ParseEventVolume("normal"); err == nil {
		t.Error("an unknown value was accepted")
	}
}

// TestWatchesLetThroughOnlyWhatChangesAnExecution: of a Job, its end and its deletion; of a pod,
// an image that cannot be pulled.
func TestWatchesLetThroughOnlyWhatChangesAnExecution(t *testing.T) {
	running := &batchv1.Job{Status: batchv1.JobStatus{Active: 1}}
	done := &batchv1.Job{Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}}}
	failed := &batchv1.Job{Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{
		{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue}, {Type: batchv1.JobFailed, Status: corev1.ConditionTrue},
	}}}
	for name, got := range map[string]bool{
		"a Job created":           !jobEvents.Create(event.CreateEvent{Object: running}),
		"a Job progressing":       !jobEvents.Update(event.UpdateEvent{ObjectOld: running, ObjectNew: running}),
		"a Job completing":        jobEvents.Update(event.UpdateEvent{ObjectOld: running, ObjectNew: done}),
		"a Job failing":           jobEvents.Update(event.UpdateEvent{ObjectOld: running, ObjectNew: failed}),
		"a finished Job at start": jobEvents.Create(event.CreateEvent{Object: done}),
		"a running Job deleted":   jobEvents.Delete(event.DeleteEvent{Object: running}),
	} {
		if !got {
			t.Errorf("%s: wrong decision", name)
		}
	}

	pending := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
		Name: ActionContainerName, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
	}}}}
	runningPod := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
		Name: ActionContainerName, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
	}}}}
	stuck := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
		Name: ActionContainerName, Image: "registry.invalid/x:1",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "back-off"}},
	}}}}
	if podEvents.Create(event.CreateEvent{Object: &corev1.Pod{}}) || podEvents.Update(event.UpdateEvent{ObjectOld: pending, ObjectNew: runningPod}) ||
		podEvents.Update(event.UpdateEvent{ObjectOld: pending, ObjectNew: pending}) {
		t.Error("a pod's ordinary progress reconciles its execution")
	}
	if !podEvents.Update(event.UpdateEvent{ObjectOld: pending, ObjectNew: stuck}) || !podEvents.Create(event.CreateEvent{Object: stuck}) {
		t.Error("a pod whose image cannot be pulled does not reconcile its execution")
	}
	if f := imagePullFailed(stuck); f == nil || f.Reason != "ImagePullBackOff" || f.Image != "registry.invalid/x:1" || f.Message != "back-off" {
		t.Errorf("image pull failure %+v", f)
	}
}
