// Command localcluster starts the local control plane (etcd, kube-apiserver,
// kube-controller-manager and the node agent, or with --kwok kube-scheduler and kwok), prints
// KUBECONFIG=<path>, and runs until it is sent SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

func main() {
	dir := flag.String("dir", ".work/cluster", "Folder for the kubeconfig, logs and pod files.")
	binDir := flag.String("bin-dir", "bin", "Folder with the project's binaries, run for the project's images.")
	webhooks := flag.String("webhook-config", "", "Folder of webhook configurations to install, pointed at a local webhook server; its address and certificate folder are written to <dir>/webhook.env.")
	crdDir := flag.String("crd-dir", "", "Folder of CRDs to install at start (the chart installs its own).")
	podNetwork := flag.Bool("pod-network", false, "Give pods their own addresses in a network namespace (root and iproute2), so webhooks behind a Service work.")
	kwok := flag.String("kwok", "", "Path of the kwok binary: simulate pods instead of running them (kube-scheduler binds them to the node "+localcluster.KwokNodeName+", kwok plays them; no node agent).")
	flag.Parse()

	abs, err := filepath.Abs(*dir)
	check(err)
	bins, err := filepath.Abs(*binDir)
	check(err)
	_ = os.Remove(filepath.Join(abs, "ready"))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := localcluster.Options{Dir: abs, Images: localcluster.ProjectImages(bins), PodNetwork: *podNetwork, Kwok: *kwok}
	if *webhooks != "" {
		opts.WebhookPaths = []string{*webhooks}
	}
	if *crdDir != "" {
		opts.CRDDirs = []string{*crdDir}
	}
	c, err := localcluster.Start(ctx, opts)
	check(err)
	if *webhooks != "" {
		env := fmt.Sprintf("WEBHOOK_HOST=%s\nWEBHOOK_PORT=%d\nWEBHOOK_CERT_DIR=%s\n", c.Webhook.Host, c.Webhook.Port, c.Webhook.CertDir)
		check(os.WriteFile(filepath.Join(abs, "webhook.env"), []byte(env), 0o600))
	}
	fmt.Printf("KUBECONFIG=%s\n", c.Kubeconfig)
	check(os.WriteFile(filepath.Join(abs, "ready"), []byte(c.Kubeconfig+"\n"), 0o600))
	<-ctx.Done()
	_ = os.Remove(filepath.Join(abs, "ready"))
	check(c.Stop())
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}
