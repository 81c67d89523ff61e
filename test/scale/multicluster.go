package scale

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

// MultiConfig is one run of the multi-cluster benchmark: one hub (the manager's cluster) and
// Clusters target clusters, each a local control plane whose pods kwok finishes.
type MultiConfig struct {
	// N executions are created at once in each phase: on the hub itself, then spread evenly
	// over the target clusters.
	N int
	// Clusters is the number of target clusters.
	Clusters int
	// Namespaces the executions are spread over (the same names on every cluster).
	Namespaces int
	// Creators is how many clients create each phase's executions concurrently.
	Creators int
	// Kwok is the kwok binary; AssetsDir holds the control plane's binaries.
	Kwok      string
	AssetsDir string
	// WorkDir receives the run's files (the manager's log and heap profiles), in a folder per run.
	WorkDir string
	// ManagerArgs are extra flags for the manager.
	ManagerArgs []string
	// Timeout bounds each phase's wait for executions to end.
	Timeout time.Duration
	// Log receives progress.
	Log io.Writer
}

func (c *MultiConfig) logf(format string, args ...any) {
	_, _ = fmt.Fprintf(c.Log, "%s multicluster n=%d clusters=%d: %s\n", time.Now().Format("15:04:05"), c.N, c.Clusters, fmt.Sprintf(format, args...))
}

// MemoryPoint is the manager's memory with Clusters target clusters connected and idle.
type MemoryPoint struct {
	Clusters     int     `json:"clusters"`
	RSSMiB       float64 `json:"rss_mib"`
	HeapAllocMiB float64 `json:"heap_alloc_mib"`
	HeapInuseMiB float64 `json:"heap_inuse_mib"`
	// Goroutines is go_goroutines: each connection runs its cache's informers and its probe.
	Goroutines float64 `json:"goroutines"`
}

// Phase is one phase's figures: N executions created at once, first create to last terminal
// phase as the benchmark's own watch of the hub sees it.
type Phase struct {
	ExecutionsPerSecond float64 `json:"executions_per_second"`
	Seconds             float64 `json:"seconds"`
	Succeeded           int     `json:"succeeded"`
	Failed              int     `json:"failed"`
	// EndP50Ms and EndP99Ms: an execution's first sighting to its first sighting ended.
	EndP50Ms float64 `json:"end_p50_ms"`
	EndP99Ms float64 `json:"end_p99_ms"`
	// CPUByProcess is the CPU seconds each process spent during the phase, by name (the
	// clusters' processes of one name added up).
	CPUByProcess map[string]float64 `json:"cpu_seconds_by_process"`
	// ManagerCPUSeconds is the manager's share of it.
	ManagerCPUSeconds float64 `json:"manager_cpu_seconds"`
	// After is the manager's memory once the phase's executions have ended, their Jobs kept.
	After MemoryPoint `json:"after"`
}

// MultiResult is one multi-cluster run's figures.
type MultiResult struct {
	N        int `json:"n"`
	Clusters int `json:"clusters"`
	// Memory is the manager's memory with 0, 1, ... Clusters target clusters connected, idle.
	Memory []MemoryPoint `json:"memory"`
	// HeapAllocMiBPerCluster and RSSMiBPerCluster are the growth from none to Clusters
	// connected, per cluster.
	HeapAllocMiBPerCluster float64 `json:"heap_alloc_mib_per_cluster"`
	RSSMiBPerCluster       float64 `json:"rss_mib_per_cluster"`
	// Local is N executions on the hub itself; Remote is N spread evenly over the targets.
	Local  Phase `json:"local"`
	Remote Phase `json:"remote"`
	// JobsByCluster counts the Jobs each target cluster holds after the remote phase, and
	// GrantsLeft the executions' ServiceAccounts, Roles and RoleBindings still there (0 when
	// every grant was revoked).
	JobsByCluster map[string]int `json:"jobs_by_cluster"`
	GrantsLeft    int            `json:"grants_left"`
}

// target is one target cluster of the run.
type target struct {
	name string
	c    *localcluster.Cluster
	k8s  client.Client
}

// RunMultiCluster runs the multi-cluster benchmark once, on new local control planes.
func RunMultiCluster(ctx context.Context, cfg MultiConfig) (res MultiResult, err error) {
	res = MultiResult{N: cfg.N, Clusters: cfg.Clusters}
	if cfg.Clusters < 1 {
		return res, errors.New("the multi-cluster benchmark needs at least one target cluster")
	}
	dir, err := runDir(cfg.WorkDir, fmt.Sprintf("n%d-clusters%d", cfg.N, cfg.Clusters))
	if err != nil {
		return res, err
	}

	cfg.logf("starting the hub and %d target control planes (kwok finishes every pod)", cfg.Clusters)
	hub, err := e2eutil.StartClusterWith(ctx, "bench-hub", localcluster.Options{
		AssetsDir:    cfg.AssetsDir,
		Kwok:         cfg.Kwok,
		WebhookPaths: []string{filepath.Join(e2eutil.RepoRoot(), "config", "webhook")},
	})
	if err != nil {
		return res, err
	}
	defer func() {
		if stopErr := hub.Stop(); stopErr != nil {
			cfg.logf("stopping the hub: %v", stopErr)
		}
	}()
	targets := make([]target, cfg.Clusters)
	for i := range targets {
		t := &targets[i]
		t.name = fmt.Sprintf("target-%d", i+1)
		if t.c, err = e2eutil.StartClusterWith(ctx, "bench-"+t.name, localcluster.Options{
			AssetsDir: cfg.AssetsDir, Kwok: cfg.Kwok, CRDDirs: []string{},
		}); err != nil {
			return res, fmt.Errorf("%s: %w", t.name, err)
		}
		defer func() {
			if stopErr := t.c.Stop(); stopErr != nil {
				cfg.logf("stopping %s: %v", t.name, stopErr)
			}
		}()
	}

	admin, k8s, namespaces, err := installExecutor(ctx, hub, cfg.Namespaces)
	if err != nil {
		return res, err
	}
	credentials := make([]map[string][]byte, len(targets))
	for i := range targets {
		if credentials[i], err = prepareTarget(ctx, &targets[i], cfg.Namespaces); err != nil {
			return res, fmt.Errorf("%s: %w", targets[i].name, err)
		}
	}

	mgr, err := startManager(ctx, hub, dir, cfg.ManagerArgs)
	if err != nil {
		return res, err
	}
	defer func() {
		if stopErr := mgr.Stop(); stopErr != nil {
			cfg.logf("stopping the manager: %v", stopErr)
		}
	}()
	cfg.logf("manager running (pid %d, log %s)", mgr.Pid(), mgr.LogPath)
	if err := applyUntilAccepted(ctx, hub.Kubeconfig, templateManifest(NoopTemplate, `["{{ .Parameters.outcome }}"]`, noopSchema)); err != nil {
		return res, err
	}
	if err := waitUntilAdmitted(ctx, k8s, namespaces[0]); err != nil {
		return res, err
	}

	// The manager's memory with no target cluster, then with each one connected, idle.
	point := func(clusters int) (MemoryPoint, error) {
		// The connection's first moments (its cache's lists, the first probe) are over.
		select {
		case <-ctx.Done():
			return MemoryPoint{}, ctx.Err()
		case <-time.After(5 * time.Second):
		}
		return mgr.memory(ctx, clusters, filepath.Join(dir, fmt.Sprintf("manager-heap-%d-clusters.pprof", clusters)))
	}
	p, err := point(0)
	if err != nil {
		return res, err
	}
	res.Memory = append(res.Memory, p)
	for i, t := range targets {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: e2eutil.Namespace, Name: t.name, // the cluster's name
				Labels: map[string]string{v1alpha1.LabelCluster: "true"}},
			Data: credentials[i],
		}
		if err := k8s.Create(ctx, s); err != nil {
			return res, err
		}
		if err := mgr.waitClusterReady(ctx, t.name, time.Minute); err != nil {
			return res, err
		}
		if p, err = point(i + 1); err != nil {
			return res, err
		}
		res.Memory = append(res.Memory, p)
		cfg.logf("%s connected: manager RSS %.1f MiB, live heap %.1f MiB, %0.f goroutines", t.name, p.RSSMiB, p.HeapAllocMiB, p.Goroutines)
	}
	first, last := res.Memory[0], res.Memory[len(res.Memory)-1]
	res.HeapAllocMiBPerCluster = (last.HeapAllocMiB - first.HeapAllocMiB) / float64(cfg.Clusters)
	res.RSSMiBPerCluster = (last.RSSMiB - first.RSSMiB) / float64(cfg.Clusters)

	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	w, err := newWatcher(watchCtx, admin)
	if err != nil {
		return res, err
	}
	phase := func(label, prefix string, cluster func(i int) string) (Phase, error) {
		var ph Phase
		cfg.logf("%s: creating %d executions at once with %d clients", label, cfg.N, cfg.Creators)
		procsBefore := children()
		start := time.Now()
		batch := names(prefix, cfg.N)
		if err := createAll(ctx, k8s, namespaces, batch, cfg.Creators, cluster); err != nil {
			return ph, err
		}
		end, err := w.waitTerminal(ctx, namespaces, batch, cfg.Timeout)
		if err != nil {
			return ph, err
		}
		procsAfter := children()
		ph.Seconds = end.Sub(start).Seconds()
		ph.ExecutionsPerSecond = float64(cfg.N) / ph.Seconds
		ph.Succeeded, ph.Failed = w.count(namespaces, batch)
		lat := w.endLatencies(namespaces, batch)
		ph.EndP50Ms, ph.EndP99Ms = percentile(lat, 50), percentile(lat, 99)
		ph.CPUByProcess = cpuSince(procsBefore, procsAfter)
		if b, ok := procsBefore[mgr.Pid()]; ok {
			ph.ManagerCPUSeconds = procsAfter[mgr.Pid()].cpuSeconds - b.cpuSeconds
		}
		if ph.After, err = mgr.memory(ctx, cfg.Clusters, filepath.Join(dir, "manager-heap-after-"+prefix+".pprof")); err != nil {
			return ph, err
		}
		cfg.logf("%s: %d executions ended in %.1fs: %.1f/s (%d succeeded, %d failed); manager RSS %.1f MiB, live heap %.1f MiB",
			label, cfg.N, ph.Seconds, ph.ExecutionsPerSecond, ph.Succeeded, ph.Failed, ph.After.RSSMiB, ph.After.HeapAllocMiB)
		return ph, nil
	}
	if res.Local, err = phase("on the hub", "local", func(int) string { return "" }); err != nil {
		return res, err
	}
	if res.Remote, err = phase(fmt.Sprintf("across %d target clusters", cfg.Clusters), "remote", func(i int) string {
		return targets[i%len(targets)].name
	}); err != nil {
		return res, err
	}

	// Every execution ran where it was sent, once, and left no grant behind there.
	res.JobsByCluster = map[string]int{}
	deadline := time.Now().Add(time.Minute)
	for {
		res.GrantsLeft = 0
		for _, t := range targets {
			jobs, left, err := t.count(ctx)
			if err != nil {
				return res, err
			}
			res.JobsByCluster[t.name] = jobs
			res.GrantsLeft += left
		}
		if res.GrantsLeft == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	cfg.logf("Jobs on the targets %v; grants left there: %d", res.JobsByCluster, res.GrantsLeft)
	return res, nil
}

// prepareTarget installs on a target cluster what docs/multicluster.md installs (the ceiling
// and config/target) plus the benchmark's ceiling fragment, and its namespaces with their
// target ConfigMaps, and returns the hub's credentials there: a cluster Secret's data.
func prepareTarget(ctx context.Context, t *target, namespaces int) (map[string][]byte, error) {
	var err error
	if t.k8s, err = client.New(t.c.Config, client.Options{Scheme: e2eutil.Scheme()}); err != nil {
		return nil, err
	}
	config := filepath.Join(e2eutil.RepoRoot(), "config")
	if out, err := e2eutil.Kubectl(t.c.Kubeconfig, "", "apply", "-f", filepath.Join(config, "rbac", "namespace.yaml"),
		"-f", filepath.Join(config, "rbac", "ceiling.yaml"), "-f", filepath.Join(config, "target", "target.yaml")); err != nil {
		return nil, fmt.Errorf("applying config/target: %w: %s", err, out)
	}
	if out, err := e2eutil.Kubectl(t.c.Kubeconfig, ceilingFragment, "apply", "-f", "-"); err != nil {
		return nil, fmt.Errorf("applying the benchmark's ceiling fragment: %w: %s", err, out)
	}
	if _, err := createNamespaces(ctx, t.k8s, namespaces); err != nil {
		return nil, err
	}
	token := &corev1.Secret{}
	for deadline := time.Now().Add(30 * time.Second); ; {
		err := t.k8s.Get(ctx, client.ObjectKey{Namespace: e2eutil.Namespace, Name: "kubernaut-executor-hub-token"}, token)
		if err == nil && len(token.Data["token"]) > 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no token for the hub: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return map[string][]byte{
		v1alpha1.ClusterSecretServer: []byte(t.c.Config.Host),
		v1alpha1.ClusterSecretCA:     token.Data["ca.crt"],
		v1alpha1.ClusterSecretToken:  token.Data["token"],
	}, nil
}

// count returns the executor's Jobs in the target cluster and its grants still there
// (ServiceAccounts, Roles and RoleBindings labelled with an execution).
func (t *target) count(ctx context.Context) (jobs, grants int, err error) {
	managed := client.MatchingLabels{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}
	jobList := &batchv1.JobList{}
	if err := t.k8s.List(ctx, jobList, managed); err != nil {
		return 0, 0, err
	}
	has := client.HasLabels{v1alpha1.LabelExecutionUID}
	for _, l := range []client.ObjectList{&corev1.ServiceAccountList{}, &rbacv1.RoleList{}, &rbacv1.RoleBindingList{}} {
		if err := t.k8s.List(ctx, l, has); err != nil {
			return 0, 0, err
		}
		grants += meta.LenList(l)
	}
	return len(jobList.Items), grants, nil
}

// memory forces a garbage collection in the manager (saving its heap profile to path) and
// returns its memory then, with clusters target clusters connected.
func (m *managerProcess) memory(ctx context.Context, clusters int, path string) (MemoryPoint, error) {
	h, err := m.heap(ctx, path)
	if err != nil {
		return MemoryPoint{}, err
	}
	p := MemoryPoint{Clusters: clusters, HeapAllocMiB: h.allocBytes / (1 << 20), HeapInuseMiB: h.inuseBytes / (1 << 20)}
	if st, ok := readProc(m.Pid()); ok {
		p.RSSMiB = float64(st.rssBytes) / (1 << 20)
	}
	if fams, err := m.Metrics(ctx); err == nil {
		for _, metric := range family(fams, "go_goroutines") {
			p.Goroutines = metric.GetGauge().GetValue()
		}
	}
	return p, nil
}

// waitClusterReady waits until the manager reports the cluster ready (kubernaut_cluster_ready).
func (m *managerProcess) waitClusterReady(ctx context.Context, name string, timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		if fams, err := m.Metrics(ctx); err == nil {
			for _, metric := range family(fams, "kubernaut_cluster_ready") {
				if label(metric, "cluster") == name && metric.GetGauge().GetValue() == 1 {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("the manager did not report cluster %s ready within %s (see its log)", name, timeout)
}
