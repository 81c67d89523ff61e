// Command localcluster starts the local control plane (etcd, kube-apiserver,
// kube-controller-manager and the node agent, or with --kwok kube-scheduler and kwok), prints
// KUBECONFIG=<path>, and runs until it is sent SIGINT or SIGTERM.
//
// `localcluster load-image [--dir DIR] IMAGE BINARY` makes the running cluster's node agent run
// BINARY for IMAGE (any tag of its repository): the local way to use an image of one's own,
// since the node agent runs programs, not containers.
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
	"github.com/kubernaut/kubernaut-executor/test/nodeagent"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "load-image" {
		loadImage(os.Args[2:])
		return
	}
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

func loadImage(args []string) {
	fs := flag.NewFlagSet("load-image", flag.ExitOnError)
	dir := fs.String("dir", ".work/demo/cluster", "The cluster's folder (make demo's by default).")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: localcluster load-image [--dir DIR] IMAGE BINARY\n\nRuns BINARY, a program built for this machine, for pods that use IMAGE (any tag).")
		fs.PrintDefaults()
	}
	check(fs.Parse(args))
	if fs.NArg() != 2 {
		fs.Usage()
		os.Exit(2)
	}
	if _, err := os.Stat(filepath.Join(*dir, "kubeconfig")); err != nil {
		check(fmt.Errorf("no local cluster in %s: %w", *dir, err))
	}
	image, binary := fs.Arg(0), fs.Arg(1)
	check(nodeagent.LoadImage(localcluster.LoadedImagesDir(*dir), image, binary))
	fmt.Printf("image %s loaded: the node agent runs %s for it\n", image, binary)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}
