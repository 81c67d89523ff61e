// Command manager runs the kubernaut-executor controllers.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/internal/audit"
	"github.com/kubernaut/kubernaut-executor/internal/manager"
)

// version is the release, stamped at build time; it picks the default action image tag.
var version = "dev"

// settings are what the manager's flags set.
type settings struct {
	metricsAddr, probeAddr      string
	leaderElect                 bool
	namespace, leaderElectionNS string
	images                      string
	executor                    controllers.ExecutorOptions
	ceiling                     string
	sweepInterval               time.Duration
	webhook                     webhook.Options
	enableWebhooks              bool
	cleanupRelease              string
	auditCfg                    audit.Config
	audit                       controllers.AuditOptions
	maxConcurrentReconciles     int
	kubeAPIQPS                  float64
	kubeAPIBurst                int
	events                      controllers.EventVolume
	accessReviewTTL             time.Duration
	pprofAddr                   string
	protectedNamespaces         string
	clusterSecrets              string
	zap                         zap.Options
}

// bindFlags defines the manager's flags on fs and returns what they set once fs is parsed.
func bindFlags(fs *flag.FlagSet) *settings {
	s := &settings{executor: controllers.ExecutorOptions{Backoff: controllers.DefaultBackoff}, events: controllers.EventsAll}
	fs.StringVar(&s.metricsAddr, "metrics-bind-address", ":8080", "Address of the metrics endpoint; 0 disables it.")
	fs.StringVar(&s.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	fs.BoolVar(&s.leaderElect, "leader-elect", false, "Elect a leader, so that only one replica reconciles at a time.")
	fs.StringVar(&s.namespace, "namespace", os.Getenv("POD_NAMESPACE"),
		"The manager's own namespace (the Helm release's), the only one whose predefined actions' ConfigMaps it reads (default: $POD_NAMESPACE).")
	fs.StringVar(&s.leaderElectionNS, "leader-election-namespace", os.Getenv("POD_NAMESPACE"), "Namespace of the leader election lease (default: $POD_NAMESPACE).")
	fs.DurationVar(&s.executor.Backoff.Base, "retry-backoff", s.executor.Backoff.Base, "Delay before the first retry of a failed attempt; doubles with each retry.")
	fs.DurationVar(&s.executor.Backoff.Max, "retry-backoff-max", s.executor.Backoff.Max, "Longest delay between attempts, before jitter.")
	fs.Float64Var(&s.executor.Backoff.Jitter, "retry-jitter", s.executor.Backoff.Jitter, "Largest random fraction added to a retry delay.")
	fs.DurationVar(&s.executor.JobTTL, "job-ttl", 24*time.Hour, "How long a finished Job and its pod are kept once the attempt's outcome is recorded.")
	fs.IntVar(&s.executor.MaxRunningJobs, "max-running-jobs", 0, "Executions running at once at most (an attempt made, not ended), across all actions; one over it waits in Pending (QueueFull), in creation order. 0: no cap.")
	fs.DurationVar(&s.sweepInterval, "grant-sweep-interval", controllers.DefaultSweepInterval, "How often ServiceAccounts and RBAC grants whose execution no longer exists are removed (also at start).")
	fs.StringVar(&s.images, "action-images", "kubernaut-actions=ghcr.io/kubernaut/kubernaut-actions:"+version,
		"Comma-separated name=reference pairs: templates whose image is <name> run <reference>.")
	fs.StringVar(&s.ceiling, "rbac-ceiling", controllers.DefaultCeilingName, "The aggregated ClusterRole that bounds what any ActionTemplate may grant.")
	fs.IntVar(&s.maxConcurrentReconciles, "max-concurrent-reconciles", controllers.DefaultMaxConcurrentReconciles,
		"Executions reconciled at once (one execution is never reconciled twice at once). Most of a reconcile is waiting on the API server, so more workers than CPUs pay off.")
	fs.Float64Var(&s.kubeAPIQPS, "kube-api-qps", manager.DefaultKubeAPIQPS,
		"Requests per second the manager sends to the API server for each kind of object, sustained; a negative value lifts the limit. The API server's priority and fairness protects it whatever the value.")
	fs.IntVar(&s.kubeAPIBurst, "kube-api-burst", manager.DefaultKubeAPIBurst, "Requests the manager may send at once above --kube-api-qps, for each kind of object.")
	fs.Func("events", `Which Events to record: "all" (default), or "warnings" to leave out the Normal ones (an execution's progress and success, an audit event written to the log).`, func(v string) error {
		var err error
		s.events, err = controllers.ParseEventVolume(v)
		return err
	})
	fs.DurationVar(&s.accessReviewTTL, "access-review-cache-ttl", manager.DefaultAccessReviewTTL,
		"How long the answer to a SubjectAccessReview (may this requester do this?) is reused for the same user and permission, by the webhook and before each attempt: a revoked right is honoured at most this long. 0 asks every time.")
	fs.StringVar(&s.pprofAddr, "pprof-bind-address", "", "Address that serves Go's CPU and memory profiles (/debug/pprof/); empty serves none.")
	fs.StringVar(&s.clusterSecrets, "cluster-secrets", "",
		"Comma-separated SECRET or SECRET=CLUSTER: Secrets in --namespace to register as target clusters (labelled kubernaut.io/cluster=true, annotated with the CLUSTER name when given) once they exist. Needs patch on those Secrets.")
	fs.StringVar(&s.protectedNamespaces, "protected-namespaces", strings.Join(manager.DefaultProtectedNamespaces, ","),
		"Comma-separated namespaces no execution may target unless its ActionTemplate allows it (spec.allowProtectedNamespaces); checked at admission and before the first attempt. The manager's own namespace (--namespace) is always protected too.")
	fs.BoolVar(&s.enableWebhooks, "enable-webhooks", true, "Serve the validating admission webhooks.")
	fs.StringVar(&s.webhook.Host, "webhook-host", "", "Address the webhook server listens on (all addresses when empty).")
	fs.IntVar(&s.webhook.Port, "webhook-port", 9443, "Port of the webhook server.")
	fs.StringVar(&s.webhook.CertDir, "webhook-cert-dir", "", "Folder with the webhook server's tls.crt and tls.key (default: controller-runtime's).")
	fs.StringVar(&s.cleanupRelease, "cleanup-ceiling-fragments", "",
		"Delete this Helm release's predefined actions (their ConfigMaps in --namespace and the ActionTemplates made from them) and ceiling fragments, wait until the ceiling no longer holds their rules, and exit (the chart's pre-delete hook).")
	fs.StringVar(&s.auditCfg.URL, "audit-url", "", "The storage service's base URL; audit events go to <url>/api/v1/audit/kubernetes-execution. Empty: events go to the log and an Event, and no execution waits for them.")
	fs.StringVar((*string)(&s.auditCfg.Format), "audit-format", string(audit.FormatKubernaut), "kubernaut (JSON) or cloudevents (CloudEvents 1.0, structured mode).")
	fs.StringVar(&s.auditCfg.CAFile, "audit-ca-file", "", "PEM bundle of the CAs that sign the storage service's certificate (default: the system's).")
	fs.StringVar(&s.auditCfg.TokenFile, "audit-token-file", "", "File holding a bearer token for the storage service, read again on every delivery (a mounted Secret rotates without a restart).")
	fs.StringVar(&s.auditCfg.CertFile, "audit-cert-file", "", "Client certificate for mutual TLS with the storage service (with --audit-key-file).")
	fs.StringVar(&s.auditCfg.KeyFile, "audit-key-file", "", "Client certificate's key.")
	fs.DurationVar(&s.audit.Deadline, "audit-deadline", 0, "Give up delivering an event this long after its execution ended: log it in full and release the execution. 0: never (an outage delays audit, it never loses it).")
	fs.IntVar(&s.audit.Concurrency, "audit-concurrency", 4, "Audit deliveries in flight at most.")
	s.zap.BindFlags(fs)
	return s
}

// check refuses values no manager can run with, and parses --action-images.
func (s *settings) check() error {
	if s.namespace == "" {
		return errors.New("neither --namespace nor $POD_NAMESPACE is set: the manager's namespace is unknown")
	}
	if s.maxConcurrentReconciles < 1 {
		return fmt.Errorf("--max-concurrent-reconciles must be at least 1, not %d", s.maxConcurrentReconciles)
	}
	if s.kubeAPIQPS == 0 {
		return errors.New("--kube-api-qps must not be 0 (a negative value lifts the limit)")
	}
	if s.executor.MaxRunningJobs < 0 {
		return fmt.Errorf("--max-running-jobs must not be negative (0: no cap), not %d", s.executor.MaxRunningJobs)
	}
	if s.kubeAPIBurst < 1 {
		return fmt.Errorf("--kube-api-burst must be at least 1, not %d", s.kubeAPIBurst)
	}
	for _, ns := range splitList(s.protectedNamespaces) {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return fmt.Errorf("invalid --protected-namespaces: %q is not a namespace name: %s", ns, strings.Join(errs, "; "))
		}
	}
	var err error
	if s.executor.ActionImages, err = parseImages(s.images); err != nil {
		return fmt.Errorf("invalid --action-images: %w", err)
	}
	if _, err := parseClusterSecrets(s.clusterSecrets); err != nil {
		return fmt.Errorf("invalid --cluster-secrets: %w", err)
	}
	return nil
}

// clusterSecrets is --cluster-secrets, which check has found valid.
func clusterSecrets(list string) map[string]string {
	m, _ := parseClusterSecrets(list)
	return m
}

// parseClusterSecrets reads --cluster-secrets: SECRET or SECRET=CLUSTER items, both DNS names.
func parseClusterSecrets(list string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range splitList(list) {
		secret, cluster, _ := strings.Cut(item, "=")
		if errs := validation.IsDNS1123Subdomain(secret); len(errs) > 0 {
			return nil, fmt.Errorf("%q: the Secret name: %s", item, strings.Join(errs, "; "))
		}
		if errs := validation.IsDNS1123Label(cluster); cluster != "" && len(errs) > 0 {
			return nil, fmt.Errorf("%q: the cluster name: %s", item, strings.Join(errs, "; "))
		}
		out[secret] = cluster
	}
	return out, nil
}

// managerOptions is how the manager is built from the flags.
func (s *settings) managerOptions() manager.Options {
	opts := manager.Options{
		Audit:                   s.audit,
		Namespace:               s.namespace,
		CeilingName:             s.ceiling,
		Executor:                s.executor,
		SweepInterval:           s.sweepInterval,
		MaxConcurrentReconciles: s.maxConcurrentReconciles,
		Events:                  s.events,
		KubeAPIQPS:              float32(s.kubeAPIQPS),
		KubeAPIBurst:            s.kubeAPIBurst,
		AccessReviewTTL:         accessReviewTTL(s.accessReviewTTL),
		PprofBindAddress:        s.pprofAddr,
		ProtectedNamespaces:     splitList(s.protectedNamespaces),
		ClusterSecrets:          clusterSecrets(s.clusterSecrets),
		MetricsBindAddress:      s.metricsAddr,
		HealthProbeBindAddress:  s.probeAddr,
		LeaderElection:          s.leaderElect,
		LeaderElectionNamespace: s.leaderElectionNS,
	}
	if s.enableWebhooks {
		opts.Webhooks = &s.webhook
	}
	return opts
}

// accessReviewTTL maps the flag's 0 ("ask every time") to the manager's "never reuse" (a
// negative TTL; its zero means the default).
func accessReviewTTL(flagValue time.Duration) time.Duration {
	if flagValue <= 0 {
		return -1
	}
	return flagValue
}

func main() {
	s := bindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&s.zap)))
	log := ctrl.Log.WithName("setup")

	if s.cleanupRelease != "" {
		if s.namespace == "" {
			log.Error(errors.New("neither --namespace nor $POD_NAMESPACE is set"), "the manager's namespace is unknown")
			os.Exit(2)
		}
		if err := cleanupCeiling(ctrl.SetupSignalHandler(), s.cleanupRelease, s.namespace, s.ceiling); err != nil {
			log.Error(err, "cleaning up the ceiling")
			os.Exit(1)
		}
		log.Info("the release's predefined actions and ceiling fragments are removed", "release", s.cleanupRelease)
		return
	}
	if err := s.check(); err != nil {
		log.Error(err, "invalid flags")
		os.Exit(2)
	}

	setMemoryLimit(log, "/sys/fs/cgroup")
	ctx := ctrl.SetupSignalHandler()
	if s.auditCfg.URL != "" {
		sender, err := audit.NewSender(s.auditCfg)
		if err != nil {
			log.Error(err, "invalid audit settings")
			os.Exit(2)
		}
		s.audit.Sink = sender
	}
	mgr, err := manager.New(ctx, ctrl.GetConfigOrDie(), s.managerOptions())
	if err != nil {
		log.Error(err, "unable to build the manager")
		os.Exit(1)
	}

	log.Info("starting the manager", "version", version, "maxConcurrentReconciles", s.maxConcurrentReconciles,
		"kubeAPIQPS", s.kubeAPIQPS, "kubeAPIBurst", s.kubeAPIBurst, "events", s.events)
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "the manager stopped")
		os.Exit(1)
	}
}

// splitList returns the non-empty items of a comma-separated list, never nil: an empty flag is
// an empty list, not the default.
func splitList(s string) []string {
	out := []string{}
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// parseImages reads name=reference pairs separated by commas.
func parseImages(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		name, ref, ok := strings.Cut(pair, "=")
		if !ok || name == "" || ref == "" {
			return nil, fmt.Errorf("%q is not name=reference", pair)
		}
		out[name] = ref
	}
	return out, nil
}
