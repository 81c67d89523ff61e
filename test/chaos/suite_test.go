// Package chaos_test is the fault suite (docs/reliability.md): each scenario runs a mixed
// workload on the local control plane, pods finished by kwok, with the shipped manager binary as
// a process of its own, injects one fault for real (the manager SIGKILLed, the leader of two
// replicas killed, the storage service answering 503, the webhook unreachable, action pods
// evicted or deleted, the manager down past the Job TTL, the API server and etcd restarted, a
// target and a namespace deleted), and then checks the same invariants, from the cluster, the API server's own
// audit log and the test storage service: nothing lost, nothing run twice, nothing left granted,
// every audit event stored once, no finalizer left behind.
//
// By default it runs the short version (make test); CHAOS_FULL=1 runs the full one (make chaos)
// unless CHAOS_SHORT=1 asks for the short one. CHAOS_SEED replays a run's random choices.
package chaos_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/test/auditreceiver"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
	"github.com/kubernaut/kubernaut-executor/test/managerproc"
)

// settings are the run's mode and seed, from the environment.
type settings struct {
	// full runs the full scenarios (make chaos); else the short ones (make test).
	full bool
	// seed drives every random choice (kill times, creation order); printed so that a run's
	// schedule can be replayed with CHAOS_SEED.
	seed uint64
	// out receives results.json, the API server's audit log, the stored audit events and one
	// folder per scenario with its manager's log.
	out string
}

// suite is what every scenario shares: one control plane, one storage service. Each scenario
// runs its own manager, in namespaces of its own, and checks only its own executions.
type suite struct {
	settings
	cluster *localcluster.Cluster
	// k8s is an administrator's client, not rate limited.
	k8s      client.Client
	receiver *auditreceiver.Server
	storage  *httptest.Server
	// auditLog is the API server's audit log: every create and delete of Jobs and executions.
	auditLog string
	// receiverLog is the storage service's log: a line per event stored or refused.
	receiverLog string
	// restarted holds the control plane processes a scenario started again in place of the
	// originals (scenario 3); they are stopped before the control plane.
	restarted []*restartedProcess
	results   *report
}

var s *suite

func TestChaos(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Chaos (faults on the local control plane, pods simulated by kwok)")
}

// auditPolicy logs, at the Metadata level (object name and response code, no bodies), what the
// invariants count: every create and delete of Jobs (exactly one create per attempt name; the
// Jobs deleted while the manager was down) and of executions (none admitted while the webhook
// is unreachable), whoever makes them.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, delete]
    resources:
      - group: batch
        resources: [jobs]
      - group: kubernetesexecution.kubernaut.io
        resources: [kubernetesexecutions]
  - level: None
`

// fullMode is true for the full version: CHAOS_FULL=1 (make chaos), unless CHAOS_SHORT=1.
var fullMode = os.Getenv("CHAOS_FULL") == "1" && os.Getenv("CHAOS_SHORT") != "1"

func readSettings() settings {
	st := settings{
		full: fullMode,
		seed: uint64(time.Now().UnixNano()), //nolint:gosec // a clock reading, never negative
		out:  os.Getenv("CHAOS_OUT"),
	}
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		Expect(err).NotTo(HaveOccurred(), "CHAOS_SEED must be a non-negative integer")
		st.seed = seed
	}
	if st.out == "" {
		st.out = filepath.Join(e2eutil.RepoRoot(), ".work", "chaos")
	}
	return st
}

var _ = BeforeSuite(func(ctx SpecContext) {
	SetDefaultEventuallyTimeout(60 * time.Second)
	SetDefaultEventuallyPollingInterval(250 * time.Millisecond)
	s = &suite{settings: readSettings()}
	mode := "short (CHAOS_FULL=1 runs the full version)"
	if s.full {
		mode = "full"
	}
	// Printed outside the captured output too: the seed is what replays a failed run.
	say("chaos: %s version, seed %d (CHAOS_SEED=%d replays the schedule), files in %s", mode, s.seed, s.seed, s.out)

	// The folder is the last run's: its results, logs and audit log are replaced.
	Expect(os.RemoveAll(s.out)).To(Succeed())
	Expect(os.MkdirAll(s.out, 0o750)).To(Succeed())
	s.results = newReport(s.settings)
	policy := filepath.Join(s.out, "audit-policy.yaml")
	Expect(os.WriteFile(policy, []byte(auditPolicy), 0o600)).To(Succeed())
	s.auditLog = filepath.Join(s.out, "apiserver-audit.log")

	kwok, err := e2eutil.KwokBinary()
	Expect(err).NotTo(HaveOccurred())
	s.cluster, err = e2eutil.StartClusterWith(ctx, "chaos", localcluster.Options{
		Kwok:         kwok,
		WebhookPaths: []string{filepath.Join(e2eutil.RepoRoot(), "config", "webhook")},
		APIServerFlags: map[string]string{
			"audit-policy-file": policy,
			"audit-log-path":    s.auditLog,
			"audit-log-format":  "json",
			// Each event is written before its request completes: the log is complete when the
			// scenario reads it.
			"audit-log-mode": "blocking",
		},
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(stopCluster)

	admin := rest.CopyConfig(s.cluster.Config)
	admin.QPS, admin.Burst = -1, 0
	s.k8s, err = client.New(admin, client.Options{Scheme: e2eutil.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	Expect(e2eutil.InstallRBAC(ctx, s.cluster, s.k8s)).To(Succeed())
	out, err := e2eutil.Kubectl(s.cluster.Kubeconfig, ceilingFragment, "apply", "-f", "-")
	Expect(err).NotTo(HaveOccurred(), out)

	// The storage service logs every event stored and every duplicate refused, with its id and
	// execution: what tells a resend after a crash from one in normal operation.
	s.receiverLog = filepath.Join(s.out, "audit-receiver.log")
	receiverLog, err := os.Create(s.receiverLog)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(receiverLog.Close)
	s.receiver, err = auditreceiver.New(filepath.Join(s.out, "audit-events.jsonl"), auditreceiver.Options{
		Logger: slog.New(slog.NewJSONHandler(receiverLog, nil)),
	})
	Expect(err).NotTo(HaveOccurred())
	s.storage = httptest.NewServer(s.receiver.Handler())

	// The template goes through the ActionTemplate webhook, so a manager serves it; each
	// scenario then runs a manager of its own.
	m, err := managerproc.Start(ctx, s.cluster, managerproc.Options{Dir: filepath.Join(s.out, "setup"), Args: s.managerArgs()})
	Expect(err).NotTo(HaveOccurred())
	defer func() { Expect(m.Stop()).To(Succeed()) }()
	Eventually(func() (string, error) {
		return e2eutil.Kubectl(s.cluster.Kubeconfig, templateManifest, "apply", "-f", "-")
	}).Should(ContainSubstring(templateName))
	Eventually(func(g Gomega) {
		for _, name := range []string{templateName, onceTemplateName} {
			tpl := &v1alpha1.ActionTemplate{}
			g.Expect(s.k8s.Get(ctx, client.ObjectKey{Name: name}, tpl)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(tpl.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue(), "template %s is not Ready", name)
		}
	}).Should(Succeed())
	Expect(createNamespace(ctx, "chaos-probe")).To(Succeed())
	Eventually(func() error {
		return s.k8s.Create(ctx, (&planned{ns: "chaos-probe", name: "probe", kind: kinds[0]}).object(), client.DryRunAll)
	}).Should(Succeed(), "no execution is admitted")
}, NodeTimeout(5*time.Minute))

// stopCluster stops what the suite started: the storage service, the control plane processes a
// scenario restarted (first the API server, which the originals' Stop no longer reaches), and
// the control plane. The results are written once more, whatever happened.
func stopCluster() {
	if s.results != nil {
		s.results.print()
		if path, err := s.results.write(); err == nil {
			say("chaos: results in %s", path)
		}
	}
	if s.storage != nil {
		s.storage.Close()
	}
	if s.receiver != nil {
		Expect(s.receiver.Close()).To(Succeed())
	}
	for _, p := range s.restarted {
		p.stop()
	}
	Expect(s.cluster.Stop()).To(Succeed())
}

// managerArgs are the flags every scenario's manager runs with: audit to the storage service,
// and retries within seconds so that a workload ends within a scenario.
func (s *suite) managerArgs(extra ...string) []string {
	return append([]string{
		"--audit-url=" + s.storage.URL,
		"--retry-backoff=1s",
		"--retry-backoff-max=2s",
		"--job-ttl=1h",
	}, extra...)
}

// say prints a line on the suite's output, which ginkgo -v streams (make chaos), and, when it
// does not, on standard output too, so that make test shows the seed and the table.
func say(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	GinkgoWriter.Println(line)
	if _, rc := GinkgoConfiguration(); !rc.Verbose && !rc.VeryVerbose {
		_, _ = fmt.Fprintln(os.Stdout, line)
	}
}

// createNamespace creates a namespace with the ConfigMap every execution targets.
func createNamespace(ctx context.Context, name string) error {
	if err := s.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		return err
	}
	return s.k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: targetName}})
}

// sleep waits for d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}
