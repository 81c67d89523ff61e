// Command scalebench runs the executor's scale benchmark (package test/scale) on the local
// control plane, once per size, prints the figures as a table and writes them to
// <out>/results.json. make bench runs it.
//
// Environment (flags override): BENCH_N (executions created at once, default 1000),
// BENCH_SIZES (several N, comma-separated, e.g. 1000,5000,10000), BENCH_CLUSTERS (when set, the
// multi-cluster benchmark instead: one hub and that many target clusters), BENCH_RATE (open-loop
// executions per second, default 20), BENCH_RATE_SECONDS (default 30), BENCH_MANAGER_ARGS (extra
// manager flags, space-separated), KWOK (the kwok binary), KUBEBUILDER_ASSETS (the control
// plane's binaries), KUBERNAUT_BIN (the project's binaries).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubernaut/kubernaut-executor/test/scale"
)

func main() {
	sizes := flag.String("sizes", env("BENCH_SIZES", env("BENCH_N", "1000")), "Executions created at once, one run per comma-separated size.")
	rate := flag.Float64("rate", envFloat("BENCH_RATE", 20), "Executions per second in the open-loop phase.")
	rateSeconds := flag.Float64("rate-seconds", envFloat("BENCH_RATE_SECONDS", 30), "Length of the open-loop phase in seconds.")
	namespaces := flag.Int("namespaces", 10, "Namespaces the executions are spread over.")
	creators := flag.Int("creators", 50, "Concurrent clients creating the executions at once, and in the baseline.")
	admissionClients := flag.Int("admission-clients", 50, "Concurrent clients in the admission phase.")
	admissionRequests := flag.Int("admission-requests", 5000, "Admission reviews per measurement.")
	baselineN := flag.Int("baseline-executions", 2000, "Executions' worth of writes the baseline makes (at most N).")
	managerArgs := flag.String("manager-args", os.Getenv("BENCH_MANAGER_ARGS"), "Extra flags for the manager, space-separated.")
	clusters := flag.Int("clusters", int(envFloat("BENCH_CLUSTERS", 0)), "Run the multi-cluster benchmark with this many target clusters instead (0: the single-cluster benchmark).")
	out := flag.String("out", ".work/bench", "Folder for results.json and each run's files.")
	timeout := flag.Duration("timeout", 30*time.Minute, "Longest wait for a phase's executions to end.")
	flag.Parse()
	// The benchmark's own watches log nothing worth reading.
	ctrllog.SetLogger(logr.Discard())

	kwok, assets := os.Getenv("KWOK"), os.Getenv("KUBEBUILDER_ASSETS")
	if kwok == "" || assets == "" {
		fmt.Fprintln(os.Stderr, "scalebench: set KWOK (the kwok binary) and KUBEBUILDER_ASSETS (make bench does)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var sizeList []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "scalebench: size %q is not a positive number\n", s)
			os.Exit(2)
		}
		sizeList = append(sizeList, n)
	}
	if *clusters > 0 {
		multiCluster(ctx, sizeList, scale.MultiConfig{
			Clusters: *clusters, Namespaces: *namespaces, Creators: *creators, Kwok: kwok, AssetsDir: assets,
			WorkDir: *out, ManagerArgs: strings.Fields(*managerArgs), Timeout: *timeout, Log: os.Stderr,
		})
		return
	}

	var runs []scale.Result
	for _, n := range sizeList {
		res, err := scale.Run(ctx, scale.Config{
			N: n, Rate: *rate, RateDuration: time.Duration(*rateSeconds * float64(time.Second)),
			Namespaces: *namespaces, Creators: *creators,
			AdmissionClients: *admissionClients, AdmissionRequests: *admissionRequests,
			BaselineExecutions: *baselineN, Kwok: kwok, AssetsDir: assets, WorkDir: *out,
			ManagerArgs: strings.Fields(*managerArgs), Timeout: *timeout, Log: os.Stderr,
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "scalebench: n=%d: %v\n", n, err)
			os.Exit(1)
		}
		runs = append(runs, res)
	}
	fmt.Println()
	scale.PrintTable(os.Stdout, runs)
	path, err := scale.WriteReport(*out, runs)
	if err != nil {
		fmt.Fprintf(os.Stderr, "scalebench: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("\nwritten to %s\n", path)
}

// multiCluster runs the multi-cluster benchmark once per size and prints and writes its figures.
func multiCluster(ctx context.Context, sizes []int, cfg scale.MultiConfig) {
	var runs []scale.MultiResult
	for _, n := range sizes {
		cfg.N = n
		res, err := scale.RunMultiCluster(ctx, cfg)
		if err != nil {
			fmt.Fprintf(os.Stderr, "scalebench: multi-cluster n=%d: %v\n", n, err)
			os.Exit(1)
		}
		fmt.Println()
		scale.PrintMultiTable(os.Stdout, res)
		runs = append(runs, res)
	}
	path, err := scale.WriteMultiReport(cfg.WorkDir, runs)
	if err != nil {
		fmt.Fprintf(os.Stderr, "scalebench: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("\nwritten to %s\n", path)
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func envFloat(key string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(key), 64); err == nil {
		return v
	}
	return def
}
