package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
)

// Exit codes, as docs/kubectl-plugin.md lists them.
const (
	// exitOK: the command did what it was asked; for run --wait, the execution Completed.
	exitOK = 0
	// exitFailed: the execution did not complete (Failed, TimedOut), a request failed (the
	// API server's refusal is printed as it gave it), or validate found a problem.
	exitFailed = 1
	// exitUsage: the command line is wrong: an unknown flag, a missing argument, a value that
	// does not parse, a target kind the API server does not know, a file validate cannot read.
	exitUsage = 2
)

// usageError is a mistake in the command line; it exits with exitUsage.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return usageError{msg: fmt.Sprintf(format, args...)}
}

// exitError ends the command with code after it has printed what the user needs; msg, when set,
// goes to stderr as the last word.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// globals is what every subcommand shares: kubectl's connection flags and the output streams.
type globals struct {
	flags   *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
	// started is set once a subcommand's RunE runs: an error before it is cobra's, about the
	// command line.
	started bool
}

// client returns a client for KubernetesExecutions as the connection flags say, warnings from
// the API server printed as kubectl prints them.
func (g *globals) client() (*executions, error) {
	cfg, err := g.flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = rest.NewWarningWriter(g.streams.ErrOut, rest.WarningWriterOptions{Deduplicate: true})
	return newExecutions(cfg)
}

// namespace is -n, or the kubeconfig context's namespace, or default.
func (g *globals) namespace() (string, error) {
	ns, _, err := g.flags.ToRawKubeConfigLoader().Namespace()
	return ns, err
}

// execute runs the plugin with args and returns its exit code.
func execute(args []string, streams genericiooptions.IOStreams) int {
	g := &globals{flags: genericclioptions.NewConfigFlags(true), streams: streams}
	root := newRootCommand(g)
	root.SetArgs(args)
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	cmd, err := root.ExecuteC()
	if err != nil && !g.started {
		var usage usageError
		if !errors.As(err, &usage) {
			err = usageError{msg: err.Error()}
		}
	}
	return report(streams.ErrOut, cmd, err)
}

func newRootCommand(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-kubernaut",
		Short: "Run KubernetesExecutions, read their results, approve or deny them, check ActionTemplates",
		Long: `Run KubernetesExecutions, read their results, approve or deny them, and check ActionTemplates
offline before applying them.

Connection flags are kubectl's: --kubeconfig, --context, -n/--namespace, --as and --as-group.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl kubernaut"},
		Version:       version,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	g.flags.AddFlags(root.PersistentFlags())
	// Declared here so that cobra does not give it -v, which kubectl users know as verbosity.
	root.Flags().Bool("version", false, "Print the plugin's version.")
	// kubectl completes a plugin's arguments through a kubectl_complete-kubernaut script, not
	// through a completion subcommand of its own.
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(newRunCommand(g), newResultCommand(g), newDecideCommand(g, true), newDecideCommand(g, false), newValidateCommand(g), newClustersCommand(g))
	// Cobra's own checks (flags, arguments, required flags, subcommand names) run before a
	// command's RunE: whatever fails before it started is a usage error.
	for _, cmd := range root.Commands() {
		run := cmd.RunE
		cmd.RunE = func(c *cobra.Command, args []string) error {
			g.started = true
			return run(c, args)
		}
	}
	return root
}

// oneArg accepts exactly one argument, what names it.
func oneArg(what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch len(args) {
		case 0:
			return usageErrorf("expected %s as the argument", what)
		case 1:
			return nil
		default:
			return usageErrorf("expected one argument, %s; got %d: %s", what, len(args), strings.Join(args, " "))
		}
	}
}

// report prints err as kubectl would and returns the exit code for it.
func report(w io.Writer, cmd *cobra.Command, err error) int {
	if err == nil {
		return exitOK
	}
	var exit exitError
	if errors.As(err, &exit) {
		if exit.msg != "" {
			_, _ = fmt.Fprintln(w, "error: "+exit.msg)
		}
		return exit.code
	}
	var usage usageError
	if errors.As(err, &usage) {
		path := "kubectl kubernaut"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		_, _ = fmt.Fprintf(w, "error: %s\nSee '%s --help' for usage.\n", err, path)
		return exitUsage
	}
	_, _ = fmt.Fprintln(w, describeError(err))
	return exitFailed
}

// describeError is err as kubectl shows it: the API server's own message with its reason, and
// for an invalid object every field at fault on a line of its own.
func describeError(err error) string {
	// Only the server's own error, not one this plugin wrapped with context of its own.
	status, ok := err.(apierrors.APIStatus)
	if !ok {
		return "error: " + err.Error()
	}
	s := status.Status()
	if s.Reason == metav1.StatusReasonInvalid && s.Details != nil && len(s.Details.Causes) > 0 {
		var b strings.Builder
		switch {
		case s.Details.Kind != "" && s.Details.Name != "":
			fmt.Fprintf(&b, "The %s %q is invalid:", s.Details.Kind, s.Details.Name)
		case s.Details.Kind != "":
			fmt.Fprintf(&b, "The %s is invalid:", s.Details.Kind)
		default:
			b.WriteString("The request is invalid:")
		}
		for _, c := range s.Details.Causes {
			if c.Field != "" {
				fmt.Fprintf(&b, "\n* %s: %s", c.Field, c.Message)
			} else {
				fmt.Fprintf(&b, "\n* %s", c.Message)
			}
		}
		return b.String()
	}
	return fmt.Sprintf("Error from server (%s): %s", s.Reason, s.Message)
}
