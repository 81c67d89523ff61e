package localcluster_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

// TestTwoClusters starts two local control planes side by side in this process, as tests of
// one manager acting on several clusters need, runs a Job of the actions image in each, and
// checks that the two are independent. It logs how long starting both took and the memory the
// processes of both hold.
func TestTwoClusters(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Skip("set KUBEBUILDER_ASSETS to the control plane's binaries (make test sets it)")
	}
	bins := binDir()
	if _, err := os.Stat(filepath.Join(bins, "kubernaut-actions")); err != nil {
		t.Fatalf("kubernaut-actions is not built (run make build, or set KUBERNAUT_BIN): %v", err)
	}
	g := NewWithT(t)
	ctx := t.Context()
	// Set to run the pods of both in network namespaces of their own (needs root and iproute2).
	podNetwork := os.Getenv("LOCALCLUSTER_POD_NETWORK") == "true"

	names := []string{"cluster-a", "cluster-b"}
	clusters := make([]*localcluster.Cluster, len(names))
	errs := make([]error, len(names))
	start := time.Now()
	var wg sync.WaitGroup
	for i := range names {
		wg.Go(func() {
			clusters[i], errs[i] = localcluster.Start(ctx, localcluster.Options{
				AssetsDir: assets, Dir: t.TempDir(), Images: localcluster.ProjectImages(bins), PodNetwork: podNetwork,
			})
		})
	}
	wg.Wait()
	took := time.Since(start)
	for i, c := range clusters {
		if c == nil {
			continue
		}
		t.Cleanup(func() {
			if err := c.Stop(); err != nil {
				t.Errorf("stopping %s: %v", names[i], err)
			}
		})
	}
	for i, err := range errs {
		g.Expect(err).NotTo(HaveOccurred(), "starting %s", names[i])
	}
	t.Logf("both control planes started in %s", took.Round(time.Millisecond))
	logMemory(t)

	a, b := clusters[0], clusters[1]
	g.Expect(a.Config.Host).NotTo(Equal(b.Config.Host))
	g.Expect(a.Kubeconfig).NotTo(Equal(b.Kubeconfig))
	clients := make([]kubernetes.Interface, len(clusters))
	for i, c := range clusters {
		cs, err := kubernetes.NewForConfig(c.Config)
		g.Expect(err).NotTo(HaveOccurred())
		clients[i] = cs
	}

	// The same namespace and Job names in both: each cluster has its own.
	const ns, job = "two", "action"
	for i, cs := range clients {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		g.Expect(err).NotTo(HaveOccurred(), "creating the namespace in %s", names[i])
	}
	for i, cs := range clients {
		g.Eventually(func() error {
			_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			return err
		}).WithTimeout(30*time.Second).WithPolling(100*time.Millisecond).Should(Succeed(), "default ServiceAccount in %s", names[i])
		_, err := cs.BatchV1().Jobs(ns).Create(ctx, actionJob(job, names[i]), metav1.CreateOptions{})
		g.Expect(err).NotTo(HaveOccurred(), "creating the Job in %s", names[i])
	}

	for i, cs := range clients {
		g.Eventually(func(g Gomega) {
			j, err := cs.BatchV1().Jobs(ns).Get(ctx, job, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(hasCondition(j.Status.Conditions, batchv1.JobComplete)).To(BeTrue(), "conditions: %v", j.Status.Conditions)
		}).WithTimeout(60*time.Second).WithPolling(100*time.Millisecond).Should(Succeed(), "the Job in %s", names[i])
		pod := onlyPod(g, cs, ns, job)
		g.Expect(pod.Spec.NodeName).To(Equal(localcluster.NodeName))
		g.Expect(pod.Status.ContainerStatuses).To(HaveLen(1))
		state := pod.Status.ContainerStatuses[0].State.Terminated
		g.Expect(state).NotTo(BeNil())
		g.Expect(state.ExitCode).To(BeZero())
		var res map[string]any
		g.Expect(json.Unmarshal([]byte(state.Message), &res)).To(Succeed(), "termination message %q", state.Message)
		// Each pod ran with its own cluster's parameters, by its own cluster's agent.
		g.Expect(res).To(HaveKeyWithValue("output", names[i]))
		g.Expect(clusters[i].Agent.Processes()).To(ConsistOf(HaveField("Pod", pod.Name)))
		g.Expect(clusters[1-i].Agent.Processes()).NotTo(ContainElement(HaveField("Pod", pod.Name)))
	}

	// An object created in one cluster is absent from the other.
	for i, cs := range clients {
		name := "only-in-" + names[i]
		_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		_, err = clients[1-i].CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%s in %s: %v", name, names[1-i], err)
	}
	_, err := clients[0].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "only-in-a"}}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = clients[1].CoreV1().Namespaces().Get(ctx, "only-in-a", metav1.GetOptions{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "namespace only-in-a in cluster-b: %v", err)
}

// actionJob is a Job of one pod, never retried, running test-action with output as its output.
func actionJob(name, output string) *batchv1.Job {
	params := fmt.Sprintf(`{"output": %q}`, output)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name: "action", Image: localcluster.ActionsImage, Args: []string{"test-action"},
					Env: []corev1.EnvVar{{Name: v1alpha1.EnvActionParameters, Value: params}},
				}},
			}},
		},
	}
}

// binDir is where `make build` put the project's binaries (KUBERNAUT_BIN overrides).
func binDir() string {
	if d := os.Getenv("KUBERNAUT_BIN"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "bin")
}

// logMemory logs the resident memory of this process and of every process it started, by
// command, from /proc (Linux only; elsewhere it logs nothing).
func logMemory(t *testing.T) {
	t.Helper()
	self := os.Getpid()
	parents := map[int]int{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := procPPID(pid); ok {
			parents[pid] = ppid
		}
	}
	descends := func(pid int) bool {
		for p := parents[pid]; p > 1; p = parents[p] {
			if p == self {
				return true
			}
		}
		return false
	}
	byCommand := map[string]int{}
	counts := map[string]int{}
	total := 0
	for pid := range parents {
		if pid != self && !descends(pid) {
			continue
		}
		kb := procRSS(pid)
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		name := strings.TrimSpace(string(comm))
		if pid == self {
			name = "test process (node agents, clients)"
		}
		byCommand[name] += kb
		counts[name]++
		total += kb
	}
	cmds := make([]string, 0, len(byCommand))
	for c := range byCommand {
		cmds = append(cmds, c)
	}
	sort.Slice(cmds, func(i, j int) bool { return byCommand[cmds[i]] > byCommand[cmds[j]] })
	for _, c := range cmds {
		t.Logf("RSS %-40s x%d %7.1f MiB", c, counts[c], float64(byCommand[c])/1024)
	}
	t.Logf("RSS total %.1f MiB", float64(total)/1024)
}

// procPPID reads a process's parent from /proc/<pid>/stat.
func procPPID(pid int) (int, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command, in parentheses, may hold spaces: the fields follow its closing one.
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(fields[1])
	return ppid, err == nil
}

// procRSS reads a process's resident memory in KiB from /proc/<pid>/status.
func procRSS(pid int) int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return kb
		}
	}
	return 0
}
