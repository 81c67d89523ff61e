package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

func TestJobName(t *testing.T) {
	long := strings.Repeat("a", 70)
	tests := []struct {
		execution string
		attempt   int32
		want      string
	}{
		{"fix-web", 1, "fix-web-1"},
		{"fix-web", 11, "fix-web-11"},
		{strings.Repeat("b", 61), 1, strings.Repeat("b", 61) + "-1"}, // exactly 63: kept
		{strings.Repeat("b", 62), 1, strings.Repeat("b", 52) + "-" + hash8(strings.Repeat("b", 62)) + "-1"},
		{long, 3, strings.Repeat("a", 52) + "-" + hash8(long) + "-3"},
		{strings.Repeat("c", 50) + "-.-" + strings.Repeat("d", 20), 2, strings.Repeat("c", 50) + "-" + hash8(strings.Repeat("c", 50)+"-.-"+strings.Repeat("d", 20)) + "-2"},
	}
	for _, tt := range tests {
		got := JobName(tt.execution, tt.attempt)
		if got != tt.want {
			t.Errorf("JobName(%q, %d) = %q, want %q", tt.execution, tt.attempt, got, tt.want)
		}
		if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
			t.Errorf("JobName(%q, %d) = %q is not a DNS label: %v", tt.execution, tt.attempt, got, errs)
		}
	}
	// Executions that share a long prefix keep distinct Job names.
	if JobName(long+"x", 1) == JobName(long+"y", 1) {
		t.Error("distinct executions got the same Job name")
	}
	if errs := validation.IsValidLabelValue(LabelValue(long)); len(errs) > 0 {
		t.Errorf("LabelValue is not a label value: %v", errs)
	}
}

func hash8(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:8]
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Base: 10 * time.Second, Max: time.Minute, Jitter: 0.5}
	zero := func() float64 { return 0 }
	almostOne := func() float64 { return 0.999 }
	tests := []struct {
		name   string
		retry  int32
		random func() float64
		want   time.Duration
	}{
		{"first retry is the base", 1, zero, 10 * time.Second},
		{"doubles", 2, zero, 20 * time.Second},
		{"doubles again", 3, zero, 40 * time.Second},
		{"capped", 4, zero, time.Minute},
		{"capped far out", 30, zero, time.Minute},
		{"jitter adds up to the fraction", 1, almostOne, 14995 * time.Millisecond},
		{"jitter on the cap", 5, almostOne, 89970 * time.Millisecond},
		{"retry 0 counts as the first", 0, zero, 10 * time.Second},
		{"no random source, no jitter", 2, nil, 20 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := b.Delay(tt.retry, tt.random); got != tt.want {
				t.Fatalf("Delay(%d) = %s, want %s", tt.retry, got, tt.want)
			}
		})
	}
}

func TestParseOutcome(t *testing.T) {
	tests := []struct {
		name     string
		message  string
		exitCode int32
		want     outcome
	}{
		{"contract success", `{"success":true,"output":"ok","data":{"replicas":3}}`, 0,
			outcome{Success: true, Output: "ok", Data: &apiextensionsv1.JSON{Raw: []byte(`{"replicas":3}`)}}},
		{"contract failure", `{"success":false,"error":"conflict"}`, 1, outcome{Error: "conflict"}},
		{"exit 0 but success false", `{"success":false}`, 0, outcome{Error: "the action reported success=false"}},
		{"success true but exit 1", `{"success":true,"output":"hm"}`, 1, outcome{Output: "hm", Error: "the action exited with code 1"}},
		{"success omitted, exit 0", `{"output":"fine"}`, 0, outcome{Success: true, Output: "fine"}},
		{"plain text log tail", "panic: boom\n", 2, outcome{Output: "panic: boom", Error: "the action exited with code 2"}},
		{"JSON that is not the contract", `{"level":"info"}`, 0, outcome{Success: true, Output: `{"level":"info"}`}},
		{"invalid JSON", `{"success":tru`, 1, outcome{Output: `{"success":tru`, Error: "the action exited with code 1"}},
		{"empty, exit 0", "", 0, outcome{Success: true}},
		{"data null dropped", `{"success":true,"data":null}`, 0, outcome{Success: true}},
		{"resource usage kept", `{"success":true,"output":"ok","resourceUsage":{"cpuMillis":120,"peakMemoryBytes":31457280}}`, 0,
			outcome{Success: true, Output: "ok", ResourceUsage: &v1alpha1.ResourceUsage{CPUMillis: 120, PeakMemoryBytes: 31457280}}},
		{"resource usage kept on failure", `{"success":false,"error":"conflict","resourceUsage":{"cpuMillis":7,"peakMemoryBytes":4096}}`, 1,
			outcome{Error: "conflict", ResourceUsage: &v1alpha1.ResourceUsage{CPUMillis: 7, PeakMemoryBytes: 4096}}},
		{"negative resource usage dropped", `{"success":true,"resourceUsage":{"cpuMillis":-1,"peakMemoryBytes":4096}}`, 0, outcome{Success: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseOutcome(tt.message, tt.exitCode)
			if got.Success != tt.want.Success || got.Output != tt.want.Output || got.Error != tt.want.Error {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if (got.Data == nil) != (tt.want.Data == nil) || (got.Data != nil && string(got.Data.Raw) != string(tt.want.Data.Raw)) {
				t.Fatalf("data = %v, want %v", got.Data, tt.want.Data)
			}
			if !sameUsage(got.ResourceUsage, tt.want.ResourceUsage) {
				t.Fatalf("resource usage = %+v, want %+v", got.ResourceUsage, tt.want.ResourceUsage)
			}
		})
	}
}

func sameUsage(a, b *v1alpha1.ResourceUsage) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// TestRecordEndObservesUsage: an ended execution whose result carries resource usage is observed
// once in the usage histograms, CPU in seconds; one without usage is not observed.
func TestRecordEndObservesUsage(t *testing.T) {
	ended := func(action string, usage *v1alpha1.ResourceUsage) *v1alpha1.KubernetesExecution {
		obj := &v1alpha1.KubernetesExecution{}
		obj.Spec.Action.Type = action
		obj.Status.Phase = v1alpha1.PhaseCompleted
		obj.Status.Result = &v1alpha1.ExecutionResult{Success: true, ResourceUsage: usage}
		return obj
	}
	recordEnd(ended("usage-metric-test", &v1alpha1.ResourceUsage{CPUMillis: 1500, PeakMemoryBytes: 64 << 20}))
	recordEnd(ended("no-usage-metric-test", nil))

	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	type observed struct {
		count uint64
		sum   float64
	}
	got := map[string]observed{}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "action" && strings.HasSuffix(l.GetValue(), "usage-metric-test") {
					got[mf.GetName()+"/"+l.GetValue()] = observed{m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()}
				}
			}
		}
	}
	want := map[string]observed{
		"kubernaut_action_cpu_seconds/usage-metric-test":       {1, 1.5},
		"kubernaut_action_peak_memory_bytes/usage-metric-test": {1, 64 << 20},
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %+v, want %+v", k, got[k], w)
		}
	}
	for k := range got {
		if strings.Contains(k, "/no-usage-") && strings.HasPrefix(k, "kubernaut_action_") {
			t.Errorf("%s observed without usage", k)
		}
	}
}

// TestParseOutcomeRoundTrip checks that the executor reads back what an action reports with the
// shared v1alpha1.ActionResult, cut as the action cuts it.
func TestParseOutcomeRoundTrip(t *testing.T) {
	yes, no := true, false
	long := strings.Repeat("é", v1alpha1.MaxResultBytes)
	tests := []struct {
		name     string
		in       v1alpha1.ActionResult
		exitCode int32
		want     outcome
	}{
		{"success with data", v1alpha1.ActionResult{Success: &yes, Output: "scaled", Data: json.RawMessage(`{"replicas":3}`)}, v1alpha1.ExitSucceeded,
			outcome{Success: true, Output: "scaled", Data: &apiextensionsv1.JSON{Raw: []byte(`{"replicas":3}`)}}},
		{"retryable failure", v1alpha1.ActionResult{Success: &no, Error: "conflict"}, v1alpha1.ExitRetryable, outcome{Error: "conflict"}},
		{"final failure without an error", v1alpha1.ActionResult{Success: &no}, v1alpha1.ExitFinal, outcome{Error: "the action exited with code 2"}},
		{"cut output", v1alpha1.ActionResult{Success: &yes, Output: v1alpha1.TruncateUTF8(long, 1024)}, v1alpha1.ExitSucceeded,
			outcome{Success: true, Output: v1alpha1.TruncateUTF8(long, 1024)}},
		{"resource usage", v1alpha1.ActionResult{Success: &yes, ResourceUsage: &v1alpha1.ResourceUsage{CPUMillis: 42, PeakMemoryBytes: 8 << 20}}, v1alpha1.ExitSucceeded,
			outcome{Success: true, ResourceUsage: &v1alpha1.ResourceUsage{CPUMillis: 42, PeakMemoryBytes: 8 << 20}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got := parseOutcome(string(b), tt.exitCode)
			if got.Success != tt.want.Success || got.Output != tt.want.Output || got.Error != tt.want.Error {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if (got.Data == nil) != (tt.want.Data == nil) || (got.Data != nil && string(got.Data.Raw) != string(tt.want.Data.Raw)) {
				t.Fatalf("data = %v, want %v", got.Data, tt.want.Data)
			}
			if !sameUsage(got.ResourceUsage, tt.want.ResourceUsage) {
				t.Fatalf("resource usage = %+v, want %+v", got.ResourceUsage, tt.want.ResourceUsage)
			}
		})
	}
}

func TestExecutionConditions(t *testing.T) {
	tests := []struct {
		phase     v1alpha1.ExecutionPhase
		wantTypes map[string]metav1.ConditionStatus
	}{
		{v1alpha1.PhasePending, map[string]metav1.ConditionStatus{"Ready": "False", "Reconciling": "True"}},
		{v1alpha1.PhaseRunning, map[string]metav1.ConditionStatus{"Ready": "False", "Reconciling": "True"}},
		{v1alpha1.PhaseRetrying, map[string]metav1.ConditionStatus{"Ready": "False", "Reconciling": "True"}},
		{v1alpha1.PhaseCompleted, map[string]metav1.ConditionStatus{"Ready": "True"}},
		{v1alpha1.PhaseFailed, map[string]metav1.ConditionStatus{"Ready": "False", "Stalled": "True"}},
		{v1alpha1.PhaseTimedOut, map[string]metav1.ConditionStatus{"Ready": "False", "Stalled": "True"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.phase), func(t *testing.T) {
			got := executionConditions(tt.phase, "SomeReason", "some message", 7)
			if len(got) != len(tt.wantTypes) {
				t.Fatalf("got %d conditions, want %d: %+v", len(got), len(tt.wantTypes), got)
			}
			for _, c := range got {
				if tt.wantTypes[c.Type] != c.Status {
					t.Errorf("%s = %s, want %s", c.Type, c.Status, tt.wantTypes[c.Type])
				}
				if c.Reason != "SomeReason" || c.Message != "some message" || c.ObservedGeneration != 7 {
					t.Errorf("%s lost its reason, message or generation: %+v", c.Type, c)
				}
			}
		})
	}

	// Moving from Running to Completed drops Reconciling; the transition time moves only for
	// conditions whose status changed.
	obj := &v1alpha1.KubernetesExecution{}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	setPhase(obj, v1alpha1.PhaseRunning, v1alpha1.ReasonProgressing, "attempt 1", t0)
	setPhase(obj, v1alpha1.PhaseRunning, v1alpha1.ReasonProgressing, "attempt 2", t0.Add(time.Minute))
	if got := obj.Status.Conditions[0].LastTransitionTime.Time; !got.Equal(t0) {
		t.Errorf("Ready transition time moved to %s without a status change", got)
	}
	setPhase(obj, v1alpha1.PhaseCompleted, v1alpha1.ReasonSucceeded, "done", t0.Add(2*time.Minute))
	if len(obj.Status.Conditions) != 1 || obj.Status.Conditions[0].Type != "Ready" {
		t.Errorf("Completed keeps %+v", obj.Status.Conditions)
	}
	if obj.Status.CompletionTime == nil || !obj.Status.CompletionTime.Time.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("completionTime = %v", obj.Status.CompletionTime)
	}
}

func TestBuildJob(t *testing.T) {
	obj := &v1alpha1.KubernetesExecution{
		ObjectMeta: metav1.ObjectMeta{Name: "fix", Namespace: "ops"},
		Spec: v1alpha1.KubernetesExecutionSpec{DryRun: true, Action: v1alpha1.ActionSpec{
			Type:       "scale-deployment",
			Parameters: &apiextensionsv1.JSON{Raw: []byte(`{"replicas":3}`)},
			Target:     v1alpha1.TargetSpec{Namespace: "prod", ResourceKind: "Deployment", ResourceName: "web"},
		}},
	}
	tpl := &v1alpha1.ActionTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "scale-deployment"},
		Spec: v1alpha1.ActionTemplateSpec{
			Image: "kubernaut-actions",
			Args:  []string{"scale-deployment", "--replicas={{ .Parameters.replicas }}", "--mode={{ .Parameters.mode }}"},
			Env: []v1alpha1.TemplatedEnvVar{
				{Name: "TARGET", Value: "{{ .Target.Namespace }}/{{ .Target.Name }}"},
				{Name: v1alpha1.EnvTargetName, Value: "spoofed"},
			},
			Parameters: &apiextensionsv1.JSON{Raw: []byte(`{"properties":{"mode":{"default":"patch"}}}`)},
		},
	}
	job, err := buildJob(jobInput{Execution: obj, Template: tpl, Attempt: 2, Remaining: 90*time.Second + time.Millisecond,
		Images: map[string]string{"kubernaut-actions": "registry/actions:v1"}})
	if err != nil {
		t.Fatal(err)
	}
	if job.Name != "fix-2" || job.Namespace != "ops" {
		t.Errorf("job %s/%s", job.Namespace, job.Name)
	}
	if *job.Spec.BackoffLimit != 0 || *job.Spec.ActiveDeadlineSeconds != 91 {
		t.Errorf("backoffLimit %d, deadline %d", *job.Spec.BackoffLimit, *job.Spec.ActiveDeadlineSeconds)
	}
	if job.Spec.TTLSecondsAfterFinished != nil {
		t.Errorf("the Job is created with a TTL (%d s): it could be deleted before its outcome is recorded", *job.Spec.TTLSecondsAfterFinished)
	}
	rule := job.Spec.PodFailurePolicy.Rules[0]
	if rule.Action != batchv1.PodFailurePolicyActionIgnore || rule.OnPodConditions[0].Type != corev1.DisruptionTarget {
		t.Errorf("pod failure policy %+v", rule)
	}
	c := job.Spec.Template.Spec.Containers[0]
	if c.Image != "registry/actions:v1" {
		t.Errorf("image %q", c.Image)
	}
	if strings.Join(c.Args, " ") != "scale-deployment --replicas=3 --mode=patch" {
		t.Errorf("args %q", c.Args)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("env %s set twice", e.Name)
		}
		env[e.Name] = e.Value
	}
	for k, v := range map[string]string{
		v1alpha1.EnvActionType: "scale-deployment", v1alpha1.EnvTargetNamespace: "prod", v1alpha1.EnvTargetKind: "Deployment",
		v1alpha1.EnvTargetName: "web", v1alpha1.EnvActionParameters: `{"mode":"patch","replicas":3}`, v1alpha1.EnvDryRun: "true",
		v1alpha1.EnvExecutionAttempt: "2", "TARGET": "prod/web",
	} {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}
	if job.Labels[v1alpha1.LabelAttempt] != "2" || job.Spec.Template.Labels[v1alpha1.LabelExecution] != "fix" {
		t.Errorf("labels %v / %v", job.Labels, job.Spec.Template.Labels)
	}
	sc := c.SecurityContext
	if *sc.AllowPrivilegeEscalation || !*sc.RunAsNonRoot || sc.Capabilities.Drop[0] != "ALL" ||
		job.Spec.Template.Spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("security context is not restricted: %+v", sc)
	}

	tpl.Spec.Args = []string{`{{ env "HOME" }}`}
	if _, err := buildJob(jobInput{Execution: obj, Template: tpl, Attempt: 1}); err == nil || !strings.Contains(err.Error(), `function "env" is not allowed`) {
		t.Errorf("a template calling env rendered: %v", err)
	}
}

// graced sets a deleted pod's grace period.
func graced(p corev1.Pod, seconds int64) corev1.Pod {
	p.DeletionGracePeriodSeconds = &seconds
	return p
}

// TestFinishedPodsTellsADeletionFromAFailure: a failed Job's pod deleted while its action ran is
// a disruption; one that ended by itself is the action's outcome, even if deleted afterwards.
func TestFinishedPodsTellsADeletionFromAFailure(t *testing.T) {
	at := func(sec int) *metav1.Time { return &metav1.Time{Time: time.Date(2026, 1, 1, 12, 0, sec, 0, time.UTC)} }
	pod := func(deleted *metav1.Time, ended *metav1.Time, code int32) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: deleted}}
		if deleted != nil {
			p.DeletionGracePeriodSeconds = ptr.To[int64](0)
		}
		if ended != nil {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: ActionContainerName,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, FinishedAt: *ended}}}}
		}
		return p
	}
	failed := &batchv1.JobCondition{Type: batchv1.JobFailed, Reason: "BackoffLimitExceeded"}
	complete := &batchv1.JobCondition{Type: batchv1.JobComplete}
	for _, tc := range []struct {
		name     string
		pods     []corev1.Pod
		finished *batchv1.JobCondition
		code     int32 // the exit code read, -1 for none
		deleted  bool
	}{
		{"failed by itself", []corev1.Pod{pod(nil, at(5), 1)}, failed, 1, false},
		{"failed by itself, deleted afterwards", []corev1.Pod{pod(at(9), at(5), 1)}, failed, 1, false},
		{"deleted while it ran", []corev1.Pod{pod(at(3), at(5), 143)}, failed, 143, true},
		{"deleted at the moment it ended", []corev1.Pod{pod(at(5), at(5), 143)}, failed, 143, true},
		{"deleted before it started", []corev1.Pod{pod(at(3), nil, 0)}, failed, -1, true},
		{"no pod left", nil, failed, -1, true},
		{"no terminated state, not deleted", []corev1.Pod{pod(nil, nil, 0)}, failed, -1, false},
		{"completed, then deleted", []corev1.Pod{pod(at(9), at(5), 0)}, complete, 0, false},
		{"completed, no pod left", nil, complete, -1, false},
		{"the latest pod decides", []corev1.Pod{pod(at(1), at(2), 143), pod(nil, at(5), 1)}, failed, 1, false},
		// The deletion timestamp is the request plus the grace period: deleted at 3 with 10
		// seconds of grace, killed at 5, it says 13.
		{"deleted with a grace period, killed within it", []corev1.Pod{graced(pod(at(13), at(5), 143), 10)}, failed, 143, true},
		{"failed by itself, deleted afterwards with a grace period", []corev1.Pod{graced(pod(at(19), at(5), 1), 10)}, failed, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			term, deleted := finishedPods(tc.pods, tc.finished)
			code := int32(-1)
			if term != nil {
				code = term.ExitCode
			}
			if code != tc.code || deleted != tc.deleted {
				t.Errorf("exit code %d, deleted %t; want %d, %t", code, deleted, tc.code, tc.deleted)
			}
		})
	}
}

// TestAuditClusterIsWhereTheActionRan checks that an execution's audit event names its target
// cluster, and the executor's own cluster for one without.
func TestAuditClusterIsWhereTheActionRan(t *testing.T) {
	obj := &v1alpha1.KubernetesExecution{}
	if got := auditCluster(obj, "hub"); got != "hub" {
		t.Errorf("local execution: cluster %q, want hub", got)
	}
	obj.Spec.Action.Target.Cluster = "east"
	if got := auditCluster(obj, "hub"); got != "east" {
		t.Errorf("execution on east: cluster %q, want east", got)
	}
}
