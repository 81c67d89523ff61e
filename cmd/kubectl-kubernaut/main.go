// Command kubectl-kubernaut is a kubectl plugin for KubernetesExecutions: it runs an action and
// follows it to the end, prints an execution's result and attempts, approves or denies an
// execution that waits for approval, and checks ActionTemplates offline with the admission
// webhook's own checks. kubectl finds it on the PATH and runs it as `kubectl kubernaut`; it takes
// kubectl's connection flags (--kubeconfig, --context, -n, --as, --as-group).
package main

import (
	"os"
	"runtime/debug"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// version is the release, stamped at build time (make build); go install module@version
// records it in the binary's build information instead.
var version = "dev"

func main() {
	if info, ok := debug.ReadBuildInfo(); ok && version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		version = info.Main.Version
	}
	os.Exit(execute(os.Args[1:], genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}))
}
