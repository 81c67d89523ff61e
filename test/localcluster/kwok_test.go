package localcluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

// TestKwok runs Jobs on a control plane whose pods kwok simulates, and checks each outcome the
// stages offer (kwok/pod-finish.yaml) and that deleted pods go away (kwok/pod-delete.yaml).
func TestKwok(t *testing.T) {
	c := startKwok(t)
	ctx := t.Context()
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	g.SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	g.Expect(c.Agent).To(BeNil(), "the node agent runs in kwok mode")
	cs, err := kubernetes.NewForConfig(c.Config)
	g.Expect(err).NotTo(HaveOccurred())
	ns := namespace(t, c, cs)

	createJob(t, cs, ns, "ok", "ok", "")
	createJob(t, cs, ns, "fail", "fail", "")
	createJob(t, cs, ns, "exit-2", "exit-2", "")
	createJob(t, cs, ns, "hang", "hang", "")
	// A Job's pods share its template's labels: one Job per attempt number.
	createJob(t, cs, ns, "fail-twice-2", "fail-twice", "2")
	createJob(t, cs, ns, "fail-twice-3", "fail-twice", "3")

	t.Run("a pod whose argument is ok succeeds", func(t *testing.T) {
		state := finishedPod(t, cs, ns, "ok", batchv1.JobComplete)
		expectTerminated(t, state, 0, map[string]any{"success": true, "output": "simulated by kwok"})
	})
	t.Run("a pod whose argument is fail fails with exit code 1", func(t *testing.T) {
		state := finishedPod(t, cs, ns, "fail", batchv1.JobFailed)
		expectTerminated(t, state, 1, map[string]any{"success": false, "error": "simulated failure"})
	})
	t.Run("a pod whose argument is exit-2 fails with exit code 2", func(t *testing.T) {
		state := finishedPod(t, cs, ns, "exit-2", batchv1.JobFailed)
		expectTerminated(t, state, 2, map[string]any{"success": false, "error": "simulated final failure"})
	})
	t.Run("fail-twice fails on attempt 2 and succeeds on attempt 3", func(t *testing.T) {
		state := finishedPod(t, cs, ns, "fail-twice-2", batchv1.JobFailed)
		expectTerminated(t, state, 1, map[string]any{"success": false, "error": "simulated failure"})
		state = finishedPod(t, cs, ns, "fail-twice-3", batchv1.JobComplete)
		expectTerminated(t, state, 0, map[string]any{"success": true, "output": "simulated by kwok"})
	})
	t.Run("a pod whose argument is hang keeps running", func(t *testing.T) {
		g := NewWithT(t)
		g.Eventually(func(g Gomega) {
			pod := onlyPod(g, cs, ns, "hang")
			g.Expect(pod.Status.Phase).To(Equal(corev1.PodRunning))
			g.Expect(pod.Status.PodIP).NotTo(BeEmpty())
			g.Expect(pod.Status.Conditions).To(ContainElement(And(
				HaveField("Type", corev1.PodReady), HaveField("Status", corev1.ConditionTrue))))
			g.Expect(pod.Status.ContainerStatuses).To(HaveEach(HaveField("State.Running", Not(BeNil()))))
		}).Should(Succeed())
		g.Consistently(func(g Gomega) {
			g.Expect(onlyPod(g, cs, ns, "hang").Status.Phase).To(Equal(corev1.PodRunning))
			job, err := cs.BatchV1().Jobs(ns).Get(ctx, "hang", metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(job.Status.Conditions).NotTo(ContainElement(HaveField("Type",
				BeElementOf(batchv1.JobComplete, batchv1.JobFailed, batchv1.JobFailureTarget, batchv1.JobSuccessCriteriaMet))))
		}).WithTimeout(3 * time.Second).Should(Succeed())
	})
	t.Run("deleted pods go away, and a Job counts its running pod's deletion as a failure", func(t *testing.T) {
		g := NewWithT(t)
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(pods.Items).To(HaveLen(6))
		// The running pod keeps the Job controller's finalizer until the Job controller has
		// counted it: kwok must delete it all the same, and leave the finalizer to its owner.
		g.Expect(pods.Items).To(ContainElement(And(
			HaveField("Labels", HaveKeyWithValue(batchv1.JobNameLabel, "hang")),
			HaveField("Finalizers", ContainElement(batchv1.JobTrackingFinalizer)))))
		g.Expect(cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})).To(Succeed())
		g.Eventually(func(g Gomega) {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(pods.Items).To(BeEmpty())
		}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		// As on a kubelet's node: the hang Job (backoffLimit 0) fails rather than replace its pod.
		g.Eventually(func(g Gomega) {
			job, err := cs.BatchV1().Jobs(ns).Get(ctx, "hang", metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(hasCondition(job.Status.Conditions, batchv1.JobFailed)).To(BeTrue(), "conditions: %v", job.Status.Conditions)
			g.Expect(job.Status.Failed).To(BeEquivalentTo(1))
		}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	})
}

// TestKwokProbe measures how fast Jobs complete on kwok: KWOK_PROBE_JOBS Jobs created by 16
// clients at once. Skipped unless KWOK_PROBE_JOBS is set; the figure is for information.
func TestKwokProbe(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("KWOK_PROBE_JOBS"))
	if n <= 0 {
		t.Skip("set KWOK_PROBE_JOBS to the number of Jobs to run")
	}
	c := startKwok(t)
	ctx := t.Context()
	config := rest.CopyConfig(c.Config)
	config.QPS, config.Burst = -1, 0 // the probe's own client is not the bottleneck
	cs, err := kubernetes.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t, c, cs)

	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				createJob(t, cs, ns, fmt.Sprintf("probe-%d", i), "ok", "")
			}
		})
	}
	wg.Wait()
	created := time.Since(start)
	for complete := 0; complete < n; {
		if time.Since(start) > 10*time.Minute {
			t.Fatalf("%d of %d Jobs complete after 10 minutes", complete, n)
		}
		time.Sleep(250 * time.Millisecond)
		jobs, err := cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		complete = 0
		for _, j := range jobs.Items {
			if hasCondition(j.Status.Conditions, batchv1.JobComplete) {
				complete++
			}
		}
	}
	took := time.Since(start)
	t.Logf("%d Jobs created in %s, all Complete after %s: %.1f jobs/s", n, created.Round(time.Millisecond),
		took.Round(time.Millisecond), float64(n)/took.Seconds())
}

// startKwok starts a control plane whose pods kwok simulates, stopped when the test ends; on
// failure the test's log shows the end of kwok's.
func startKwok(t *testing.T) *localcluster.Cluster {
	t.Helper()
	kwok, assets := os.Getenv("KWOK"), os.Getenv("KUBEBUILDER_ASSETS")
	if kwok == "" || assets == "" {
		t.Skip("set KWOK to the kwok binary and KUBEBUILDER_ASSETS to the control plane's binaries (make test sets both)")
	}
	dir := t.TempDir()
	kwokLog := filepath.Join(dir, "kwok.log")
	c, err := localcluster.Start(t.Context(), localcluster.Options{AssetsDir: assets, Dir: dir, Kwok: kwok})
	if err != nil {
		logTail(t, kwokLog)
		t.Fatalf("starting the control plane: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, kwokLog)
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	return c
}

// namespace creates a namespace and waits for its default ServiceAccount, without which the
// Job controller's pods are refused.
func namespace(t *testing.T, c *localcluster.Cluster, cs kubernetes.Interface) string {
	t.Helper()
	ns, err := c.Namespace(t.Context(), "kwok", nil)
	if err != nil {
		t.Fatal(err)
	}
	NewWithT(t).Eventually(func() error {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(t.Context(), "default", metav1.GetOptions{})
		return err
	}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	return ns
}

// createJob creates a Job of one pod, never retried, whose container's first argument is arg,
// and whose pod carries the label kubernaut.io/attempt when attempt is set.
func createJob(t *testing.T, cs kubernetes.Interface, ns, name, arg, attempt string) {
	t.Helper()
	var labels map[string]string
	if attempt != "" {
		labels = map[string]string{"kubernaut.io/attempt": attempt}
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers:    []corev1.Container{{Name: "action", Image: localcluster.ActionsImage, Args: []string{arg}}},
				},
			},
		},
	}
	if _, err := cs.BatchV1().Jobs(ns).Create(t.Context(), job, metav1.CreateOptions{}); err != nil {
		t.Errorf("creating the Job %s: %v", name, err)
	}
}

// finishedPod waits for the Job to have the condition and returns its pod's first container's
// terminated state, after checking that the pod ran on the kwok node with an address.
func finishedPod(t *testing.T, cs kubernetes.Interface, ns, job string, condition batchv1.JobConditionType) *corev1.ContainerStateTerminated {
	t.Helper()
	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		j, err := cs.BatchV1().Jobs(ns).Get(t.Context(), job, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(hasCondition(j.Status.Conditions, condition)).To(BeTrue(), "conditions: %v", j.Status.Conditions)
	}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	var pod *corev1.Pod
	g.Eventually(func(g Gomega) { pod = onlyPod(g, cs, ns, job) }).Should(Succeed())
	g.Expect(pod.Spec.NodeName).To(Equal(localcluster.KwokNodeName))
	g.Expect(pod.Status.PodIP).NotTo(BeEmpty())
	g.Expect(pod.Status.ContainerStatuses).NotTo(BeEmpty())
	state := pod.Status.ContainerStatuses[0].State.Terminated
	g.Expect(state).NotTo(BeNil(), "the container has not terminated: %+v", pod.Status.ContainerStatuses[0].State)
	return state
}

// expectTerminated checks the exit code and that the termination message is the JSON want.
func expectTerminated(t *testing.T, state *corev1.ContainerStateTerminated, exitCode int32, want map[string]any) {
	t.Helper()
	g := NewWithT(t)
	g.Expect(state.ExitCode).To(Equal(exitCode))
	var got map[string]any
	g.Expect(json.Unmarshal([]byte(state.Message), &got)).To(Succeed(), "termination message %q", state.Message)
	g.Expect(got).To(Equal(want))
}

// onlyPod returns the Job's one pod.
func onlyPod(g Gomega, cs kubernetes.Interface, ns, job string) *corev1.Pod {
	pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(pods.Items).To(HaveLen(1))
	return &pods.Items[0]
}

func hasCondition(conditions []batchv1.JobCondition, t batchv1.JobConditionType) bool {
	for _, c := range conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// logTail logs the last lines of a file, for a failure's cause.
func logTail(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	var lines []string
	for s := bufio.NewScanner(f); s.Scan(); {
		lines = append(lines, s.Text())
		if len(lines) > 40 {
			lines = lines[1:]
		}
	}
	t.Logf("end of %s:", path)
	for _, l := range lines {
		t.Log(l)
	}
}
