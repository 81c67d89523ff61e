// Command manager runs the kubernaut-executor controllers.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/internal/audit"
	"github.com/kubernaut/kubernaut-executor/internal/manager"
)

// version is the release, stamped at build time; it picks the default action image tag.
var version = "dev"

func main() {
	var (
		metricsAddr, probeAddr string
		leaderElect            bool
		images                 string
		opts                   = controllers.ExecutorOptions{Backoff: controllers.DefaultBackoff}
		ceiling                string
		webhookOpts            webhook.Options
		enableWebhooks         bool
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address of the metrics endpoint; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader, so that only one replica reconciles at a time.")
	var namespace, leaderElectionNamespace string
	flag.StringVar(&namespace, "namespace", os.Getenv("POD_NAMESPACE"),
		"The manager's own namespace (the Helm release's), the only one whose predefined actions' ConfigMaps it reads (default: $POD_NAMESPACE).")
	flag.StringVar(&leaderElectionNamespace, "leader-election-namespace", os.Getenv("POD_NAMESPACE"), "Namespace of the leader election lease (default: $POD_NAMESPACE).")
	flag.DurationVar(&opts.Backoff.Base, "retry-backoff", opts.Backoff.Base, "Delay before the first retry of a failed attempt; doubles with each retry.")
	flag.DurationVar(&opts.Backoff.Max, "retry-backoff-max", opts.Backoff.Max, "Longest delay between attempts, before jitter.")
	flag.Float64Var(&opts.Backoff.Jitter, "retry-jitter", opts.Backoff.Jitter, "Largest random fraction added to a retry delay.")
	flag.DurationVar(&opts.JobTTL, "job-ttl", 24*time.Hour, "How long a finished Job and its pod are kept.")
	var sweepInterval time.Duration
	flag.DurationVar(&sweepInterval, "grant-sweep-interval", controllers.DefaultSweepInterval, "How often ServiceAccounts and RBAC grants whose execution no longer exists are removed (also at start).")
	flag.StringVar(&images, "action-images", "kubernaut-actions=ghcr.io/kubernaut/kubernaut-actions:"+version,
		"Comma-separated name=reference pairs: templates whose image is <name> run <reference>.")
	flag.StringVar(&ceiling, "rbac-ceiling", controllers.DefaultCeilingName, "The aggregated ClusterRole that bounds what any ActionTemplate may grant.")
	flag.BoolVar(&enableWebhooks, "enable-webhooks", true, "Serve the validating admission webhooks.")
	flag.StringVar(&webhookOpts.Host, "webhook-host", "", "Address the webhook server listens on (all addresses when empty).")
	flag.IntVar(&webhookOpts.Port, "webhook-port", 9443, "Port of the webhook server.")
	flag.StringVar(&webhookOpts.CertDir, "webhook-cert-dir", "", "Folder with the webhook server's tls.crt and tls.key (default: controller-runtime's).")
	var cleanupRelease string
	flag.StringVar(&cleanupRelease, "cleanup-ceiling-fragments", "",
		"Delete this Helm release's predefined actions (their ConfigMaps in --namespace and the ActionTemplates made from them) and ceiling fragments, wait until the ceiling no longer holds their rules, and exit (the chart's pre-delete hook).")
	zapOpts := zap.Options{}
	var auditCfg audit.Config
	var auditOpts controllers.AuditOptions
	flag.StringVar(&auditCfg.URL, "audit-url", "", "The storage service's base URL; audit events go to <url>/api/v1/audit/kubernetes-execution. Empty: events go to the log and an Event, and no execution waits for them.")
	flag.StringVar((*string)(&auditCfg.Format), "audit-format", string(audit.FormatKubernaut), "kubernaut (JSON) or cloudevents (CloudEvents 1.0, structured mode).")
	flag.StringVar(&auditCfg.CAFile, "audit-ca-file", "", "PEM bundle of the CAs that sign the storage service's certificate (default: the system's).")
	flag.StringVar(&auditCfg.TokenFile, "audit-token-file", "", "File holding a bearer token for the storage service, read again on every delivery (a mounted Secret rotates without a restart).")
	flag.StringVar(&auditCfg.CertFile, "audit-cert-file", "", "Client certificate for mutual TLS with the storage service (with --audit-key-file).")
	flag.StringVar(&auditCfg.KeyFile, "audit-key-file", "", "Client certificate's key.")
	flag.DurationVar(&auditOpts.Deadline, "audit-deadline", 0, "Give up delivering an event this long after its execution ended: log it in full and release the execution. 0: never (an outage delays audit, it never loses it).")
	flag.IntVar(&auditOpts.Concurrency, "audit-concurrency", 4, "Audit deliveries in flight at most.")
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

	if namespace == "" {
		log.Error(errors.New("neither --namespace nor $POD_NAMESPACE is set"), "the manager's namespace is unknown")
		os.Exit(2)
	}
	if cleanupRelease != "" {
		if err := cleanupCeiling(ctrl.SetupSignalHandler(), cleanupRelease, namespace, ceiling); err != nil {
			log.Error(err, "cleaning up the ceiling")
			os.Exit(1)
		}
		log.Info("the release's predefined actions and ceiling fragments are removed", "release", cleanupRelease)
		return
	}
	var err error
	if opts.ActionImages, err = parseImages(images); err != nil {
		log.Error(err, "invalid --action-images")
		os.Exit(2)
	}

	ctx := ctrl.SetupSignalHandler()
	if auditCfg.URL != "" {
		sender, err := audit.NewSender(auditCfg)
		if err != nil {
			log.Error(err, "invalid audit settings")
			os.Exit(2)
		}
		auditOpts.Sink = sender
	}
	mgrOpts := manager.Options{
		Audit:                   auditOpts,
		Namespace:               namespace,
		CeilingName:             ceiling,
		Executor:                opts,
		SweepInterval:           sweepInterval,
		MetricsBindAddress:      metricsAddr,
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionNamespace: leaderElectionNamespace,
	}
	if enableWebhooks {
		mgrOpts.Webhooks = &webhookOpts
	}
	mgr, err := manager.New(ctx, ctrl.GetConfigOrDie(), mgrOpts)
	if err != nil {
		log.Error(err, "unable to build the manager")
		os.Exit(1)
	}

	log.Info("starting the manager", "version", version)
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "the manager stopped")
		os.Exit(1)
	}
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
