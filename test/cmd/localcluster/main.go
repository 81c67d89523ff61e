// Command localcluster starts the local control plane (etcd, kube-apiserver,
// kube-controller-manager and the node agent), prints KUBECONFIG=<path>, and runs until it is
// sent SIGINT or SIGTERM.
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
	flag.Parse()

	abs, err := filepath.Abs(*dir)
	check(err)
	bins, err := filepath.Abs(*binDir)
	check(err)
	_ = os.Remove(filepath.Join(abs, "ready"))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := localcluster.Start(ctx, localcluster.Options{Dir: abs, Images: localcluster.ProjectImages(bins)})
	check(err)
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
