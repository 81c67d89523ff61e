// Package scale is the executor's scale benchmark on the local control plane: N executions of a
// no-op template, whose pods kwok finishes (no process runs per pod), created all at once for
// throughput and then open-loop at a fixed rate for latency; admission latency under concurrent
// clients; and a bare client-go baseline that makes the executor's writes on the same API server
// at full speed, the floor the executor is judged against, then again with its Jobs' pods run
// (the cluster baseline). The manager runs as its own process,
// the shipped binary, so that its memory and CPU are its own.
package scale

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

// Config is one run of the benchmark.
type Config struct {
	// N executions are created all at once (the throughput phase).
	N int
	// Rate executions per second are created open-loop for RateDuration (the latency phase).
	Rate         float64
	RateDuration time.Duration
	// Namespaces the executions are spread over.
	Namespaces int
	// Creators is how many clients create the throughput phase's executions concurrently.
	Creators int
	// AdmissionClients send AdmissionRequests reviews in all, at the webhook and through the
	// API server each.
	AdmissionClients  int
	AdmissionRequests int
	// BaselineExecutions is how many executions' worth of writes the baseline makes (at most N).
	BaselineExecutions int
	// Kwok is the kwok binary; AssetsDir holds the control plane's binaries.
	Kwok      string
	AssetsDir string
	// WorkDir receives the run's files (the API server's audit log, the manager's log and
	// profile), in a folder per run.
	WorkDir string
	// ManagerArgs are extra flags for the manager (for example --max-concurrent-reconciles=4).
	ManagerArgs []string
	// Timeout bounds each phase's wait for executions to end.
	Timeout time.Duration
	// Log receives progress.
	Log io.Writer
}

func (c *Config) logf(format string, args ...any) {
	_, _ = fmt.Fprintf(c.Log, "%s scale n=%d: %s\n", time.Now().Format("15:04:05"), c.N, fmt.Sprintf(format, args...))
}

// managerUser is the manager's identity on the API server (its ServiceAccount).
const managerUser = "system:serviceaccount:" + e2eutil.Namespace + ":kubernaut-executor"

// auditPolicy logs the manager's writes, and nothing else, at the Metadata level.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    users: ["` + managerUser + `"]
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
`

// Run runs the benchmark once on a new local control plane and returns its figures.
func Run(ctx context.Context, cfg Config) (res Result, err error) {
	res = Result{N: cfg.N, Rate: cfg.Rate, AdmissionClients: cfg.AdmissionClients}
	dir, err := runDir(cfg.WorkDir, fmt.Sprintf("n%d", cfg.N))
	if err != nil {
		return res, err
	}
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return res, err
	}
	auditLog := filepath.Join(dir, "apiserver-audit.log")

	cfg.logf("starting the control plane (kwok, kube-scheduler; the API server's audit log in %s)", auditLog)
	c, err := e2eutil.StartClusterWith(ctx, "bench", localcluster.Options{
		AssetsDir:    cfg.AssetsDir,
		Kwok:         cfg.Kwok,
		WebhookPaths: []string{filepath.Join(e2eutil.RepoRoot(), "config", "webhook")},
		APIServerFlags: map[string]string{
			"audit-policy-file": policy,
			"audit-log-path":    auditLog,
			"audit-log-format":  "json",
			// Written as each request completes, so the count is complete when the run is.
			"audit-log-mode": "blocking",
		},
	})
	if err != nil {
		return res, err
	}
	defer func() {
		// A control plane slow to stop costs nothing measured: say so, keep the figures.
		if stopErr := c.Stop(); stopErr != nil {
			cfg.logf("stopping the control plane: %v", stopErr)
		}
	}()

	admin, k8s, namespaces, err := installExecutor(ctx, c, cfg.Namespaces)
	if err != nil {
		return res, err
	}

	mgr, err := startManager(ctx, c, dir, cfg.ManagerArgs)
	if err != nil {
		return res, err
	}
	defer func() {
		if stopErr := mgr.Stop(); stopErr != nil {
			cfg.logf("stopping the manager: %v", stopErr)
		}
	}()
	cfg.logf("manager running (pid %d, log %s)", mgr.Pid(), mgr.LogPath)

	wideSchemaJSON, wideParams := wideSchema(10 * 1024)
	for _, t := range []string{
		templateManifest(NoopTemplate, `["{{ .Parameters.outcome }}"]`, noopSchema),
		templateManifest(WideTemplate, `["ok"]`, wideSchemaJSON),
	} {
		if err := applyUntilAccepted(ctx, c.Kubeconfig, t); err != nil {
			return res, err
		}
	}
	if err := waitUntilAdmitted(ctx, k8s, namespaces[0]); err != nil {
		return res, err
	}

	// The watches end before the control plane stops (an open watch holds the API server up).
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	w, err := newWatcher(watchCtx, admin)
	if err != nil {
		return res, err
	}

	// The throughput phase.
	before := mgr.sample(ctx, auditLog)
	procsBefore := children()
	cfg.logf("creating %d executions at once with %d clients", cfg.N, cfg.Creators)
	profileDone := mgr.profile(ctx, filepath.Join(dir, "manager-cpu.pprof"), 20*time.Second)
	start := time.Now()
	burst := names("b", cfg.N)
	if err := createAll(ctx, k8s, namespaces, burst, cfg.Creators, nil); err != nil {
		return res, err
	}
	cfg.logf("created in %.1fs; waiting for them to end", time.Since(start).Seconds())
	last, err := w.waitTerminal(ctx, namespaces, burst, cfg.Timeout)
	if err != nil {
		return res, err
	}
	procsAfter := children()
	res.BurstSeconds = last.Sub(start).Seconds()
	res.ExecutionsPerSecond = float64(cfg.N) / res.BurstSeconds
	res.Succeeded, res.Failed = w.count(namespaces, burst)
	res.BurstJobCreateP99Ms = percentile(w.jobLatencies(namespaces, burst), 99)
	res.CPUByProcess = cpuSince(procsBefore, procsAfter)
	res.Bottleneck = busiest(res.CPUByProcess)
	if p := <-profileDone; p != "" {
		res.CPUProfile = p
	}
	cfg.logf("%d executions ended in %.1fs: %.1f/s", cfg.N, res.BurstSeconds, res.ExecutionsPerSecond)

	// The latency phase: open loop, each create on its own clock tick.
	rateN := int(cfg.Rate * cfg.RateDuration.Seconds())
	res.RateN = rateN
	if rateN > 0 {
		cfg.logf("creating %d executions at %.0f/s", rateN, cfg.Rate)
		paced := names("r", rateN)
		if err := createAtRate(ctx, k8s, namespaces, paced, cfg.Rate); err != nil {
			return res, err
		}
		if _, err := w.waitTerminal(ctx, namespaces, paced, cfg.Timeout); err != nil {
			return res, err
		}
		lat := w.jobLatencies(namespaces, paced)
		res.JobCreateP50Ms, res.JobCreateP99Ms = percentile(lat, 50), percentile(lat, 99)
	}

	// What the executions cost: the manager's writes as the API server counted them, its own
	// count, its reconciles, memory and CPU, once its writes have stopped.
	if err := quiesce(ctx, auditLog, 3*time.Second); err != nil {
		return res, err
	}
	after := mgr.sample(ctx, auditLog)
	total := float64(cfg.N + rateN)
	writes, err := countWrites(auditLog, before.auditOffset)
	if err != nil {
		return res, err
	}
	res.WritesByVerbResource = map[string]float64{}
	var sum int
	for k, n := range writes {
		res.WritesByVerbResource[k] = float64(n) / total
		sum += n
	}
	res.WritesPerExecution = float64(sum) / total
	res.ClientWritesPerExecution = (after.clientWrites - before.clientWrites) / total
	res.ReconcilesPerExecution = (after.reconciles - before.reconciles) / total
	res.ManagerRSSMiB = float64(after.rssBytes) / (1 << 20)
	res.ManagerRSSBytesPerExecution = float64(after.rssBytes-before.rssBytes) / total
	res.ManagerCPUSeconds = after.cpuSeconds
	// What the RSS holds: the live heap after a forced collection, and where it was allocated.
	heap, err := mgr.heap(ctx, filepath.Join(dir, "manager-heap.pprof"))
	if err != nil {
		cfg.logf("the manager's heap: %v", err)
	}
	res.HeapProfile = heap.profile
	res.ManagerHeapInuseMiB, res.ManagerHeapAllocMiB = heap.inuseBytes/(1<<20), heap.allocBytes/(1<<20)
	cfg.logf("%.2f writes and %.2f reconciles per execution; manager RSS %.1f MiB (heap in use %.1f MiB, live %.1f MiB), CPU %.1fs",
		res.WritesPerExecution, res.ReconcilesPerExecution, res.ManagerRSSMiB, res.ManagerHeapInuseMiB, res.ManagerHeapAllocMiB, res.ManagerCPUSeconds)

	cfg.logf("admission: %d reviews from %d clients, at the webhook and through the API server", cfg.AdmissionRequests, cfg.AdmissionClients)
	wide := &v1alpha1.ActionTemplate{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: WideTemplate}, wide); err != nil {
		return res, err
	}
	whLat, err := admissionAtWebhook(ctx, c.Webhook, wide, namespaces[0], wideParams, cfg.AdmissionClients, cfg.AdmissionRequests)
	if err != nil {
		return res, err
	}
	res.AdmissionWebhookP50Ms, res.AdmissionWebhookP99Ms = percentile(whLat, 50), percentile(whLat, 99)
	apiLat, err := admissionThroughAPIServer(ctx, k8s, namespaces[0], wideParams, cfg.AdmissionClients, cfg.AdmissionRequests)
	if err != nil {
		return res, err
	}
	res.AdmissionAPIServerP50Ms, res.AdmissionAPIServerP99Ms = percentile(apiLat, 50), percentile(apiLat, 99)

	units := min(cfg.BaselineExecutions, cfg.N)
	cfg.logf("baseline: the writes of %d executions at full speed", units)
	writesMade, elapsed, err := runBaseline(ctx, cfg, admin, res.WritesByVerbResource, units, baselineMode{namespace: "bench-baseline"})
	if err != nil {
		return res, err
	}
	res.BaselineWritesPerSecond = float64(writesMade) / elapsed.Seconds()
	if res.WritesPerExecution > 0 {
		res.BaselineExecutionsPerSecond = res.BaselineWritesPerSecond / res.WritesPerExecution
	}
	cfg.logf("cluster baseline: the same, with each Job's pod made, scheduled and finished (kwok) before the revocation")
	if _, elapsed, err = runBaseline(ctx, cfg, admin, res.WritesByVerbResource, units, baselineMode{namespace: "bench-baseline-cluster", runJobs: true}); err != nil {
		return res, err
	}
	res.BaselineClusterExecutionsPerSecond = float64(units) / elapsed.Seconds()
	cfg.logf("baseline %.1f executions/s, cluster baseline %.1f executions/s", res.BaselineExecutionsPerSecond, res.BaselineClusterExecutionsPerSecond)
	return res, nil
}

// runDir makes an empty folder name in workDir for a run's files and returns its absolute path.
func runDir(workDir, name string) (string, error) {
	dir, err := filepath.Abs(filepath.Join(workDir, name))
	if err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	return dir, os.MkdirAll(dir, 0o750)
}

// installExecutor installs on c what the manager needs (config/rbac and config/predefined) and
// the benchmark's ceiling fragment, and creates the benchmark's namespaces with their target
// ConfigMaps. It returns the administrator's client config, without a client-side rate limit
// (the benchmark's clients are not limited), a client for it, and the namespaces.
func installExecutor(ctx context.Context, c *localcluster.Cluster, namespaces int) (*rest.Config, client.Client, []string, error) {
	admin := rest.CopyConfig(c.Config)
	admin.QPS, admin.Burst = -1, 0
	k8s, err := client.New(admin, client.Options{Scheme: e2eutil.Scheme()})
	if err != nil {
		return nil, nil, nil, err
	}
	if err := e2eutil.InstallRBAC(ctx, c, k8s); err != nil {
		return nil, nil, nil, err
	}
	if out, err := e2eutil.Kubectl(c.Kubeconfig, ceilingFragment, "apply", "-f", "-"); err != nil {
		return nil, nil, nil, fmt.Errorf("applying the benchmark's ceiling fragment: %w: %s", err, out)
	}
	names, err := createNamespaces(ctx, k8s, namespaces)
	if err != nil {
		return nil, nil, nil, err
	}
	return admin, k8s, names, nil
}

// runBaseline runs a baseline of units executions with cfg.Creators writers, within cfg.Timeout.
func runBaseline(ctx context.Context, cfg Config, rc *rest.Config, perExecution map[string]float64, units int, mode baselineMode) (int64, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	writes, elapsed, err := baseline(ctx, rc, perExecution, units, cfg.Creators, mode)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", mode.namespace, err)
	}
	return writes, elapsed, nil
}

// busiest names the process that spent the most CPU.
func busiest(cpu map[string]float64) string {
	best, most := "", -1.0
	for name, s := range cpu {
		if s > most {
			best, most = name, s
		}
	}
	return best
}

// names returns n execution names with prefix.
func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return out
}

// namespaceOf spreads executions over namespaces by index.
func namespaceOf(namespaces []string, i int) string { return namespaces[i%len(namespaces)] }

func createNamespaces(ctx context.Context, k8s client.Client, n int) ([]string, error) {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("bench-%d", i)
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: out[i]}}); err != nil {
			return nil, err
		}
		if err := k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: out[i], Name: targetName}}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// execution is a benchmark execution of the template, with parameters paramsJSON.
func execution(ns, name, template, paramsJSON string) *v1alpha1.KubernetesExecution {
	return &v1alpha1.KubernetesExecution{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.KubernetesExecutionSpec{Action: v1alpha1.ActionSpec{
			Type:       template,
			Parameters: &apiextensionsv1.JSON{Raw: []byte(paramsJSON)},
			Target:     v1alpha1.TargetSpec{Namespace: ns, ResourceKind: "ConfigMap", ResourceName: targetName},
		}},
	}
}

// createAll creates the executions with workers concurrent clients; the i-th targets the cluster
// cluster(i) names ("" for the executor's own), or the executor's own when cluster is nil.
func createAll(ctx context.Context, k8s client.Client, namespaces, names []string, workers int, cluster func(i int) string) error {
	work := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range work {
				obj := execution(namespaceOf(namespaces, i), names[i], NoopTemplate, `{"outcome":"ok"}`)
				if cluster != nil {
					obj.Spec.Action.Target.Cluster = cluster(i)
				}
				if err := k8s.Create(ctx, obj); err != nil {
					errs <- fmt.Errorf("creating %s: %w", names[i], err)
					return
				}
			}
		})
	}
	var err error
feed:
	for i := range names {
		select {
		case work <- i:
		case err = <-errs:
			break feed
		}
	}
	close(work)
	wg.Wait()
	close(errs)
	return errors.Join(err, <-errs)
}

// createAtRate creates the executions open-loop: one every 1/rate seconds, each in its own
// goroutine, whatever the earlier ones' latency.
func createAtRate(ctx context.Context, k8s client.Client, namespaces, names []string, rate float64) error {
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := range names {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Go(func() {
			if err := k8s.Create(ctx, execution(namespaceOf(namespaces, i), names[i], NoopTemplate, `{"outcome":"ok"}`)); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// applyUntilAccepted applies a manifest, retrying while the webhook or the ceiling is not ready.
func applyUntilAccepted(ctx context.Context, kubeconfig, manifest string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := e2eutil.Kubectl(kubeconfig, manifest, "apply", "-f", "-")
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("applying a template: %w: %s", err, out)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// waitUntilAdmitted waits until an execution of the no-op template passes admission (a
// server-side dry run): the templates are ready and the webhooks answer.
func waitUntilAdmitted(ctx context.Context, k8s client.Client, ns string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := k8s.Create(ctx, execution(ns, "probe", NoopTemplate, `{"outcome":"ok"}`), client.DryRunAll)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no execution is admitted: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// watcher records, from its own watches, when each execution was first seen, when it was first
// seen ended, and when its first Job was first seen.
type watcher struct {
	mu       sync.Mutex
	created  map[string]time.Time
	ended    map[string]time.Time
	phase    map[string]v1alpha1.ExecutionPhase
	jobSeen  map[string]time.Time
	changed  chan struct{}
	informer cache.Cache
}

func newWatcher(ctx context.Context, cfg *rest.Config) (*watcher, error) {
	managed := labels.SelectorFromSet(labels.Set{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue})
	ca, err := cache.New(cfg, cache.Options{Scheme: e2eutil.Scheme(), ByObject: map[client.Object]cache.ByObject{
		&batchv1.Job{}: {Label: managed},
	}, DefaultTransform: cache.TransformStripManagedFields()})
	if err != nil {
		return nil, err
	}
	w := &watcher{created: map[string]time.Time{}, ended: map[string]time.Time{}, phase: map[string]v1alpha1.ExecutionPhase{},
		jobSeen: map[string]time.Time{}, changed: make(chan struct{}, 1), informer: ca}
	execs, err := ca.GetInformer(ctx, &v1alpha1.KubernetesExecution{})
	if err != nil {
		return nil, err
	}
	onExec := func(obj any) {
		now := time.Now()
		e, ok := obj.(*v1alpha1.KubernetesExecution)
		if !ok {
			return
		}
		key := e.Namespace + "/" + e.Name
		w.mu.Lock()
		if _, seen := w.created[key]; !seen {
			w.created[key] = now
		}
		if _, done := w.ended[key]; !done && e.Status.Phase.IsTerminal() {
			w.ended[key], w.phase[key] = now, e.Status.Phase
			select {
			case w.changed <- struct{}{}:
			default:
			}
		}
		w.mu.Unlock()
	}
	if _, err := execs.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: onExec, UpdateFunc: func(_, obj any) { onExec(obj) },
	}); err != nil {
		return nil, err
	}
	jobs, err := ca.GetInformer(ctx, &batchv1.Job{})
	if err != nil {
		return nil, err
	}
	if _, err := jobs.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: func(obj any) {
		now := time.Now()
		j, ok := obj.(*batchv1.Job)
		if !ok {
			return
		}
		key := j.Namespace + "/" + j.Labels[v1alpha1.LabelExecution]
		w.mu.Lock()
		if _, seen := w.jobSeen[key]; !seen {
			w.jobSeen[key] = now
		}
		w.mu.Unlock()
	}}); err != nil {
		return nil, err
	}
	go func() { _ = ca.Start(ctx) }()
	if !ca.WaitForCacheSync(ctx) {
		return nil, errors.New("the benchmark's watches did not sync")
	}
	return w, nil
}

// waitTerminal waits until every named execution has ended and returns when the last was seen
// ending.
func (w *watcher) waitTerminal(ctx context.Context, namespaces, names []string, timeout time.Duration) (time.Time, error) {
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		var last time.Time
		left := 0
		for i, n := range names {
			t, ok := w.ended[namespaceOf(namespaces, i)+"/"+n]
			if !ok {
				left++
				continue
			}
			if t.After(last) {
				last = t
			}
		}
		w.mu.Unlock()
		if left == 0 {
			return last, nil
		}
		select {
		case <-w.changed:
		case <-time.After(time.Second):
		case <-deadline:
			return time.Time{}, fmt.Errorf("%d of %d executions had not ended after %s", left, len(names), timeout)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// count returns how many of the executions completed and how many failed or timed out.
func (w *watcher) count(namespaces, names []string) (completed, failed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, n := range names {
		if w.phase[namespaceOf(namespaces, i)+"/"+n] == v1alpha1.PhaseCompleted {
			completed++
		} else {
			failed++
		}
	}
	return completed, failed
}

// jobLatencies returns, for each execution that has a Job, the time from the execution's
// first sighting to its Job's.
func (w *watcher) jobLatencies(namespaces, names []string) []time.Duration {
	return w.latencies(namespaces, names, w.jobSeen)
}

// endLatencies returns, for each execution seen ended, the time from its first sighting to its
// first sighting ended.
func (w *watcher) endLatencies(namespaces, names []string) []time.Duration {
	return w.latencies(namespaces, names, w.ended)
}

// latencies returns, for each execution with a time in to, that time less its first sighting.
func (w *watcher) latencies(namespaces, names []string, to map[string]time.Time) []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]time.Duration, 0, len(names))
	for i, n := range names {
		key := namespaceOf(namespaces, i) + "/" + n
		c, ok1 := w.created[key]
		t, ok2 := to[key]
		if ok1 && ok2 {
			out = append(out, t.Sub(c))
		}
	}
	return out
}

// quiesce waits until the audit log has not grown for quiet: the manager's writes have stopped.
func quiesce(ctx context.Context, path string, quiet time.Duration) error {
	var size int64 = -1
	stable := time.Now()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		if st.Size() != size {
			size, stable = st.Size(), time.Now()
		} else if time.Since(stable) >= quiet {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return errors.New("the manager's writes did not stop within 2 minutes")
}

// ShortName is a label-safe short form of a verb and resource, for the report.
func ShortName(verb, resource, subresource string) string {
	if subresource != "" {
		resource += "/" + subresource
	}
	return strings.TrimSpace(verb + " " + resource)
}
