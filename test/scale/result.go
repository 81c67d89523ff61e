package scale

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one run's figures. The JSON keys are the report's contract (results.json).
type Result struct {
	// N is the number of executions created all at once (the throughput phase).
	N int `json:"n"`
	// ExecutionsPerSecond is N over the time from the first create to the last terminal phase.
	ExecutionsPerSecond float64 `json:"executions_per_second"`
	// BurstSeconds is that time.
	BurstSeconds float64 `json:"burst_seconds"`
	// Succeeded and Failed count the throughput phase's executions by terminal phase.
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`

	// BaselineWritesPerSecond is what a bare client-go program writes per second on the same
	// API server, making the executor's writes at full speed.
	BaselineWritesPerSecond float64 `json:"baseline_writes_per_second"`
	// BaselineExecutionsPerSecond is BaselineWritesPerSecond over WritesPerExecution: the most
	// executions per second the API server allows, the ceiling the executor is judged against.
	BaselineExecutionsPerSecond float64 `json:"baseline_executions_per_second"`
	// BaselineClusterExecutionsPerSecond is the same program's executions per second (units
	// over the time from its first write to its last) when its Jobs run: each Job's pod is
	// made by the Job controller, bound by the scheduler and finished by kwok, and a unit's
	// revocation (its updates and deletes) waits for its Job to complete. It is the most
	// executions per second this machine sustains with the executor's writes AND the Job
	// controller, scheduler and kubelet (kwok) work each execution causes, but none of the
	// executor's own CPU or logic.
	BaselineClusterExecutionsPerSecond float64 `json:"baseline_cluster_executions_per_second"`

	// WritesPerExecution is the manager's writes per execution, counted by the API server's
	// audit log (the manager's user), over both phases.
	WritesPerExecution float64 `json:"writes_per_execution"`
	// WritesByVerbResource splits it by verb and resource ("create jobs", "patch
	// kubernetesexecutions/status").
	WritesByVerbResource map[string]float64 `json:"writes_by_verb_resource"`
	// ClientWritesPerExecution is the same count from the manager's own client metrics
	// (rest_client_requests_total, POST/PUT/PATCH/DELETE): the cross-check.
	ClientWritesPerExecution float64 `json:"client_writes_per_execution"`
	// ReconcilesPerExecution is controller_runtime_reconcile_total of the execution controller
	// per execution.
	ReconcilesPerExecution float64 `json:"reconciles_per_execution"`

	// Rate is the open-loop phase's creation rate (executions per second), RateN its count.
	Rate  float64 `json:"rate"`
	RateN int     `json:"rate_n"`
	// JobCreateP50Ms and JobCreateP99Ms: execution created → its Job created, at Rate, from
	// the benchmark's watch timestamps.
	JobCreateP50Ms float64 `json:"job_create_p50_ms"`
	JobCreateP99Ms float64 `json:"job_create_p99_ms"`
	// BurstJobCreateP99Ms is the same during the throughput phase (queueing included).
	BurstJobCreateP99Ms float64 `json:"burst_job_create_p99_ms"`

	// Admission latency of a create for a template with a 10 KB parameter schema, with
	// AdmissionClients concurrent clients: at the validating webhook directly, and through the
	// API server (a server-side dry run: both webhooks and the admission policies).
	AdmissionClients        int     `json:"admission_clients"`
	AdmissionWebhookP50Ms   float64 `json:"admission_webhook_p50_ms"`
	AdmissionWebhookP99Ms   float64 `json:"admission_webhook_p99_ms"`
	AdmissionAPIServerP50Ms float64 `json:"admission_apiserver_p50_ms"`
	AdmissionAPIServerP99Ms float64 `json:"admission_apiserver_p99_ms"`

	// ManagerRSSMiB and ManagerCPUSeconds: the manager process once every execution of both
	// phases has ended, their Jobs still present.
	ManagerRSSMiB     float64 `json:"manager_rss_mib"`
	ManagerCPUSeconds float64 `json:"manager_cpu_seconds"`
	// ManagerRSSBytesPerExecution is the RSS growth from before the first execution, per
	// execution.
	ManagerRSSBytesPerExecution float64 `json:"manager_rss_bytes_per_execution"`
	// ManagerHeapInuseMiB and ManagerHeapAllocMiB are the manager's heap at the same moment,
	// after a forced garbage collection (go_memstats_heap_inuse_bytes and
	// go_memstats_heap_alloc_bytes): the spans in use, and the live objects in them.
	ManagerHeapInuseMiB float64 `json:"manager_heap_inuse_mib"`
	ManagerHeapAllocMiB float64 `json:"manager_heap_alloc_mib"`
	// HeapProfile is the manager's heap profile taken then (go tool pprof
	// -sample_index=inuse_space), if any.
	HeapProfile string `json:"heap_profile,omitempty"`

	// CPUByProcess is the CPU seconds each process of the control plane spent during the
	// throughput phase: where the time went.
	CPUByProcess map[string]float64 `json:"cpu_seconds_by_process"`
	// Bottleneck names the process that spent the most CPU in the throughput phase.
	Bottleneck string `json:"bottleneck"`
	// CPUProfile is the manager's CPU profile taken during the throughput phase, if any.
	CPUProfile string `json:"cpu_profile,omitempty"`
}

// Report is what results.json holds: the largest run's figures at the top level, and every run.
type Report struct {
	Result
	Runs []Result `json:"runs"`
	// Machine describes where the figures were taken.
	Machine string `json:"machine"`
	Date    string `json:"date"`
}

// WriteReport writes results.json into dir.
func WriteReport(dir string, runs []Result) (string, error) {
	if len(runs) == 0 {
		return "", fmt.Errorf("no runs")
	}
	largest := slices.MaxFunc(runs, func(a, b Result) int { return a.N - b.N })
	host, _ := os.Hostname()
	return writeResults(dir, Report{Result: largest, Runs: runs, Machine: fmt.Sprintf("%s, %d CPUs", host, numCPU()), Date: time.Now().UTC().Format(time.RFC3339)})
}

// writeResults writes report as results.json in dir and returns its path.
func writeResults(dir string, report any) (string, error) {
	b, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "results.json")
	return path, os.WriteFile(path, append(b, '\n'), 0o600)
}

// PrintTable prints the runs side by side, one row per figure.
func PrintTable(w io.Writer, runs []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(name string, f func(Result) string) {
		cells := []string{name}
		for _, r := range runs {
			cells = append(cells, f(r))
		}
		_, _ = fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	num := func(f func(Result) float64, prec int) func(Result) string {
		return func(r Result) string { return fmt.Sprintf("%.*f", prec, f(r)) }
	}
	// ofExecutor is the executor's executions per second as a fraction of a baseline's.
	ofExecutor := func(base func(Result) float64) func(Result) string {
		return num(func(r Result) float64 {
			if base(r) == 0 {
				return 0
			}
			return r.ExecutionsPerSecond / base(r)
		}, 2)
	}
	row("n", func(r Result) string { return fmt.Sprint(r.N) })
	row("executions/s (all at once)", num(func(r Result) float64 { return r.ExecutionsPerSecond }, 1))
	row("  burst seconds", num(func(r Result) float64 { return r.BurstSeconds }, 1))
	row("  succeeded / failed", func(r Result) string { return fmt.Sprintf("%d / %d", r.Succeeded, r.Failed) })
	row("baseline writes/s", num(func(r Result) float64 { return r.BaselineWritesPerSecond }, 0))
	row("baseline executions/s", num(func(r Result) float64 { return r.BaselineExecutionsPerSecond }, 1))
	row("executor / baseline", ofExecutor(func(r Result) float64 { return r.BaselineExecutionsPerSecond }))
	row("cluster baseline executions/s", num(func(r Result) float64 { return r.BaselineClusterExecutionsPerSecond }, 1))
	row("executor / cluster baseline", ofExecutor(func(r Result) float64 { return r.BaselineClusterExecutionsPerSecond }))
	row("writes/execution (API server)", num(func(r Result) float64 { return r.WritesPerExecution }, 2))
	row("writes/execution (manager client)", num(func(r Result) float64 { return r.ClientWritesPerExecution }, 2))
	row("reconciles/execution", num(func(r Result) float64 { return r.ReconcilesPerExecution }, 2))
	row("created→Job p50 ms (open loop)", num(func(r Result) float64 { return r.JobCreateP50Ms }, 1))
	row("created→Job p99 ms (open loop)", num(func(r Result) float64 { return r.JobCreateP99Ms }, 1))
	row("created→Job p99 ms (all at once)", num(func(r Result) float64 { return r.BurstJobCreateP99Ms }, 0))
	row("admission p50 ms (webhook)", num(func(r Result) float64 { return r.AdmissionWebhookP50Ms }, 2))
	row("admission p99 ms (webhook)", num(func(r Result) float64 { return r.AdmissionWebhookP99Ms }, 2))
	row("admission p50 ms (API server)", num(func(r Result) float64 { return r.AdmissionAPIServerP50Ms }, 2))
	row("admission p99 ms (API server)", num(func(r Result) float64 { return r.AdmissionAPIServerP99Ms }, 2))
	row("manager RSS MiB", num(func(r Result) float64 { return r.ManagerRSSMiB }, 1))
	row("manager RSS bytes/execution", num(func(r Result) float64 { return r.ManagerRSSBytesPerExecution }, 0))
	row("manager heap in use MiB", num(func(r Result) float64 { return r.ManagerHeapInuseMiB }, 1))
	row("manager live heap MiB", num(func(r Result) float64 { return r.ManagerHeapAllocMiB }, 1))
	row("manager CPU seconds", num(func(r Result) float64 { return r.ManagerCPUSeconds }, 1))
	row("bottleneck (most CPU)", func(r Result) string { return r.Bottleneck })
	_ = tw.Flush()

	for _, r := range runs {
		_, _ = fmt.Fprintf(w, "\nn=%d: writes per execution by verb and resource (API server audit log)\n", r.N)
		keys := make([]string, 0, len(r.WritesByVerbResource))
		for k := range r.WritesByVerbResource {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			_, _ = fmt.Fprintf(w, "  %-45s %6.2f\n", k, r.WritesByVerbResource[k])
		}
		_, _ = fmt.Fprintf(w, "n=%d: CPU seconds by process during the throughput phase\n", r.N)
		procs := make([]string, 0, len(r.CPUByProcess))
		for p := range r.CPUByProcess {
			procs = append(procs, p)
		}
		sort.Slice(procs, func(i, j int) bool { return r.CPUByProcess[procs[i]] > r.CPUByProcess[procs[j]] })
		for _, p := range procs {
			_, _ = fmt.Fprintf(w, "  %-45s %8.1f\n", p, r.CPUByProcess[p])
		}
	}
}

// percentile returns the p-th percentile (0-100) of durations in milliseconds, nearest rank.
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p/100*float64(len(s)))) - 1
	rank = max(0, min(rank, len(s)-1))
	return float64(s[rank]) / float64(time.Millisecond)
}

// MultiReport is what the multi-cluster benchmark's results.json holds.
type MultiReport struct {
	Runs    []MultiResult `json:"runs"`
	Machine string        `json:"machine"`
	Date    string        `json:"date"`
}

// WriteMultiReport writes the multi-cluster runs to results.json in dir.
func WriteMultiReport(dir string, runs []MultiResult) (string, error) {
	host, _ := os.Hostname()
	return writeResults(dir, MultiReport{Runs: runs, Machine: fmt.Sprintf("%s, %d CPUs", host, numCPU()), Date: time.Now().UTC().Format(time.RFC3339)})
}

// PrintMultiTable prints a multi-cluster run's figures.
func PrintMultiTable(w io.Writer, r MultiResult) {
	_, _ = fmt.Fprintf(w, "n=%d executions per phase, %d target clusters\n\n", r.N, r.Clusters)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "figure\ton the hub\tacross the targets\t")
	row := func(name string, f func(Phase) string) {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t\n", name, f(r.Local), f(r.Remote))
	}
	row("executions/s (all at once)", func(p Phase) string { return fmt.Sprintf("%.1f", p.ExecutionsPerSecond) })
	row("  seconds", func(p Phase) string { return fmt.Sprintf("%.1f", p.Seconds) })
	row("  succeeded / failed", func(p Phase) string { return fmt.Sprintf("%d / %d", p.Succeeded, p.Failed) })
	row("created→ended p50 / p99 s", func(p Phase) string { return fmt.Sprintf("%.1f / %.1f", p.EndP50Ms/1000, p.EndP99Ms/1000) })
	row("manager CPU seconds", func(p Phase) string { return fmt.Sprintf("%.1f", p.ManagerCPUSeconds) })
	row("manager RSS MiB after", func(p Phase) string { return fmt.Sprintf("%.1f", p.After.RSSMiB) })
	row("manager live heap MiB after", func(p Phase) string { return fmt.Sprintf("%.1f", p.After.HeapAllocMiB) })
	_ = tw.Flush()

	_, _ = fmt.Fprintln(w, "\nthe manager with target clusters connected, idle (after a forced garbage collection)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "clusters\tRSS MiB\tlive heap MiB\theap in use MiB\tgoroutines\t")
	for _, m := range r.Memory {
		_, _ = fmt.Fprintf(tw, "%d\t%.1f\t%.2f\t%.2f\t%.0f\t\n", m.Clusters, m.RSSMiB, m.HeapAllocMiB, m.HeapInuseMiB, m.Goroutines)
	}
	_ = tw.Flush()
	_, _ = fmt.Fprintf(w, "per connected cluster: %.2f MiB live heap, %.1f MiB RSS\n", r.HeapAllocMiBPerCluster, r.RSSMiBPerCluster)
	_, _ = fmt.Fprintf(w, "Jobs on each target after the run: %v; grants left there: %d\n", r.JobsByCluster, r.GrantsLeft)

	_, _ = fmt.Fprintln(w, "\nCPU seconds by process across the targets (processes of one name added up)")
	procs := make([]string, 0, len(r.Remote.CPUByProcess))
	for p := range r.Remote.CPUByProcess {
		procs = append(procs, p)
	}
	sort.Slice(procs, func(i, j int) bool { return r.Remote.CPUByProcess[procs[i]] > r.Remote.CPUByProcess[procs[j]] })
	for _, p := range procs {
		_, _ = fmt.Fprintf(w, "  %-45s %8.1f (on the hub phase: %.1f)\n", p, r.Remote.CPUByProcess[p], r.Local.CPUByProcess[p])
	}
}
