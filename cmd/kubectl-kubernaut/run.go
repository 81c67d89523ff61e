package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// runOptions are run's flags.
type runOptions struct {
	target, targetNamespace string
	params                  []string
	paramsFile              string
	dryRun, approval, wait  bool
	timeout, queueTimeout   time.Duration
	maxRetries              int32
	name                    string
}

func newRunCommand(g *globals) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run TEMPLATE --target KIND/NAME [--param KEY=VALUE ...] [--wait]",
		Short: "Create an execution of an action and, with --wait, follow it to the end",
		Long: `Create a KubernetesExecution that runs the action TEMPLATE (an ActionTemplate's name) against
one target, in the namespace of -n (or the kubeconfig context's).

The target is KIND/NAME, KIND as kubectl accepts it (Deployment, deploy, deployments.apps, node).
It is in the execution's namespace unless --target-namespace names another; a cluster-scoped
kind such as Node has none.

--param KEY=VALUE sets a top-level parameter. A VALUE that is JSON is taken as such (3 is a
number, true a boolean, '{"a":1}' an object, '"3"' a string); anything else is a string. Keys
are not split at dots: nest with a JSON object value or a --params-file.

The API server's admission checks the parameters against the template's schema and the target
against your rights; a refusal names every field at fault.

With --wait, the command prints each change of phase with its reason and message, then the
result and attempts as "result" does, and exits 0 once the execution Completed, 1 if it Failed
or TimedOut.`,
		Example: `  # Scale a Deployment and follow the execution to its end.
  kubectl kubernaut run scale-deployment --target Deployment/web --param replicas=3 -n shop --wait

  # Cordon a node (cluster-scoped: no target namespace), waiting for a person's approval.
  kubectl kubernaut run cordon-node --target node/worker-1 --approval -n ops

  # See what a rollback would change, without changing it.
  kubectl kubernaut run rollback-deployment --target deploy/api --dry-run --wait`,
		Args: oneArg("the TEMPLATE (an ActionTemplate's name)"),
	}
	o.bindFlags(cmd.Flags())
	_ = cmd.MarkFlagRequired("target")

	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		spec, err := o.parse(cmd.Flags(), args[0], g.streams.In)
		if err != nil {
			return err
		}
		ns, err := g.namespace()
		if err != nil {
			return err
		}
		mapper, err := g.flags.ToRESTMapper()
		if err != nil {
			return err
		}
		kind, err := resolveKind(mapper, spec.target.resource)
		if err != nil {
			return err
		}
		obj, err := spec.execution(ns, kind)
		if err != nil {
			return err
		}
		c, err := g.client()
		if err != nil {
			return err
		}
		generated := obj.Name == ""
		if obj, err = c.create(cmd.Context(), obj); err != nil {
			// The API server generates the name before admission runs, so a refusal names an
			// execution that was never created; leave it out rather than send the user looking.
			if status, ok := err.(*apierrors.StatusError); ok && generated && status.ErrStatus.Details != nil {
				status.ErrStatus.Details.Name = ""
			}
			return err
		}
		if _, err := fmt.Fprintf(g.streams.Out, "kubernetesexecution %s/%s created\n", obj.Namespace, obj.Name); err != nil {
			return err
		}
		if !o.wait {
			return nil
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		final, err := follow(ctx, c, obj, g.streams.Out)
		if err != nil {
			if ctx.Err() != nil {
				return exitError{code: exitFailed, msg: fmt.Sprintf("stopped following kubernetesexecution %s/%s; it goes on (kubectl kubernaut result %s -n %s)",
					obj.Namespace, obj.Name, obj.Name, obj.Namespace)}
			}
			return err
		}
		if _, err := fmt.Fprintln(g.streams.Out); err != nil {
			return err
		}
		if err := writeResult(g.streams.Out, final); err != nil {
			return err
		}
		if final.Status.Phase != v1alpha1.PhaseCompleted {
			msg := fmt.Sprintf("kubernetesexecution %s/%s ended %s", final.Namespace, final.Name, final.Status.Phase)
			if ready := meta.FindStatusCondition(final.Status.Conditions, v1alpha1.ConditionReady); ready != nil {
				msg += " (" + ready.Reason + ")"
			}
			return exitError{code: exitFailed, msg: msg}
		}
		return nil
	}
	return cmd
}

// bindFlags defines run's flags on f.
func (o *runOptions) bindFlags(f *pflag.FlagSet) {
	f.StringVar(&o.target, "target", "", "The object the action acts on, as KIND/NAME. Required.")
	f.StringVar(&o.targetNamespace, "target-namespace", "", "The target's namespace, when not the execution's.")
	f.StringArrayVar(&o.params, "param", nil, "A parameter as KEY=VALUE; VALUE is JSON when it parses as JSON, else a string. Repeat for more.")
	f.StringVar(&o.paramsFile, "params-file", "", `A YAML or JSON object of parameters ("-" reads standard input); --param overrides its keys.`)
	f.BoolVar(&o.dryRun, "dry-run", false, "Create the execution with spec.dryRun: the action reports what it would change and changes nothing.")
	f.DurationVar(&o.timeout, "timeout", 0, "spec.timeout: how long the execution may take, retries and the wait for approval included (default: the template's).")
	f.DurationVar(&o.queueTimeout, "queue-timeout", 0, "spec.queueTimeout: how long the execution may wait to start behind others (default: its timeout).")
	f.Int32Var(&o.maxRetries, "max-retries", 0, "spec.maxRetries: how many times a failed attempt is retried (default: 3, or the template's retry cap when that is lower).")
	f.BoolVar(&o.approval, "approval", false, "spec.approval: Required: the execution waits for a person's approval before anything runs.")
	f.StringVar(&o.name, "name", "", `The execution's name (default: generated, "TEMPLATE-" and a random suffix).`)
	f.BoolVar(&o.wait, "wait", false, "Follow the execution to its end, then print its result; exit 1 unless it Completed.")
}

// runSpec is run's command line, parsed: everything the execution is made of but what only the
// API server knows (the target kind's name and scope, the default namespace).
type runSpec struct {
	template string
	target   targetArg
	params   map[string]any
	o        *runOptions
	// set records which optional spec fields were given, so that an unset one stays unset and
	// the template's default applies.
	timeoutSet, queueTimeoutSet, maxRetriesSet bool
}

// parse checks the command line and reads the parameters.
func (o *runOptions) parse(flags *pflag.FlagSet, template string, stdin io.Reader) (*runSpec, error) {
	target, err := parseTarget(o.target)
	if err != nil {
		return nil, err
	}
	var file []byte
	switch o.paramsFile {
	case "":
	case "-":
		if file, err = io.ReadAll(stdin); err != nil {
			return nil, fmt.Errorf("--params-file: reading standard input: %w", err)
		}
	default:
		if file, err = os.ReadFile(o.paramsFile); err != nil { //nolint:gosec // the user names the file to read
			return nil, usageErrorf("--params-file: %v", err)
		}
	}
	params, err := parseParams(file, o.params)
	if err != nil {
		return nil, err
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"timeout", o.timeout}, {"queue-timeout", o.queueTimeout}} {
		if d.v < 0 {
			return nil, usageErrorf("--%s %s: must not be negative", d.name, d.v)
		}
	}
	if o.maxRetries < 0 {
		return nil, usageErrorf("--max-retries %d: must not be negative", o.maxRetries)
	}
	return &runSpec{
		template: template, target: target, params: params, o: o,
		timeoutSet: flags.Changed("timeout"), queueTimeoutSet: flags.Changed("queue-timeout"), maxRetriesSet: flags.Changed("max-retries"),
	}, nil
}

// execution is the KubernetesExecution the command line asks for, in namespace ns, its target of
// kind.
func (s *runSpec) execution(ns string, kind resolvedKind) (*v1alpha1.KubernetesExecution, error) {
	targetNS := ""
	switch {
	case kind.namespaced && s.o.targetNamespace != "":
		targetNS = s.o.targetNamespace
	case kind.namespaced:
		targetNS = ns
	case s.o.targetNamespace != "":
		return nil, usageErrorf("--target-namespace: %s is cluster-scoped; its objects have no namespace", kind.kind)
	}
	obj := &v1alpha1.KubernetesExecution{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "KubernetesExecution"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: s.o.name,
		},
		Spec: v1alpha1.KubernetesExecutionSpec{
			Action: v1alpha1.ActionSpec{
				Type:   s.template,
				Target: v1alpha1.TargetSpec{Namespace: targetNS, ResourceKind: kind.kind, ResourceName: s.target.name},
			},
			DryRun: s.o.dryRun,
		},
	}
	if obj.Name == "" {
		obj.GenerateName = s.template + "-"
	}
	if len(s.params) > 0 {
		raw, err := json.Marshal(s.params)
		if err != nil {
			return nil, fmt.Errorf("encoding the parameters: %w", err)
		}
		obj.Spec.Action.Parameters = &apiextensionsv1.JSON{Raw: raw}
	}
	if s.timeoutSet {
		obj.Spec.Timeout = &metav1.Duration{Duration: s.o.timeout}
	}
	if s.queueTimeoutSet {
		obj.Spec.QueueTimeout = &metav1.Duration{Duration: s.o.queueTimeout}
	}
	if s.maxRetriesSet {
		obj.Spec.MaxRetries = &s.o.maxRetries
	}
	if s.o.approval {
		obj.Spec.Approval = v1alpha1.ApprovalRequired
	}
	return obj, nil
}

// progress is what run --wait prints a line for when it changes.
type progress struct {
	phase          v1alpha1.ExecutionPhase
	reason, detail string
}

func progressOf(obj *v1alpha1.KubernetesExecution) progress {
	p := progress{phase: obj.Status.Phase}
	if ready := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady); ready != nil {
		p.reason, p.detail = ready.Reason, ready.Message
	}
	return p
}

func (p progress) String() string {
	s := string(p.phase)
	if p.reason != "" {
		s += " (" + p.reason + ")"
	}
	if p.detail != "" {
		s += ": " + p.detail
	}
	return s
}

// follow watches obj until it reaches a terminal phase, printing a line to out each time its
// phase or Ready condition changes, and returns it as it ended. A watch the API server closes is
// opened again where it left off (or from a fresh read when that point has expired).
func follow(ctx context.Context, c *executions, obj *v1alpha1.KubernetesExecution, out io.Writer) (*v1alpha1.KubernetesExecution, error) {
	var last progress
	show := func(o *v1alpha1.KubernetesExecution) error {
		p := progressOf(o)
		if p == last || p.phase == "" {
			return nil
		}
		last = p
		_, err := fmt.Fprintln(out, p)
		return err
	}
	name := fmt.Sprintf("kubernetesexecution %s/%s", obj.Namespace, obj.Name)
	for {
		if err := show(obj); err != nil {
			return nil, err
		}
		if obj.Status.Phase.IsTerminal() {
			return obj, nil
		}
		w, err := c.watch(ctx, obj.Namespace, obj.Name, obj.ResourceVersion)
		if err != nil {
			return nil, fmt.Errorf("watching %s: %w", name, err)
		}
		next, gone, err := watchUntil(ctx, w, show)
		w.Stop()
		switch {
		case err != nil:
			return nil, err
		case gone:
			return nil, fmt.Errorf("%s was deleted before it ended", name)
		case next != nil:
			obj = next
			if obj.Status.Phase.IsTerminal() {
				return obj, nil
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The watch ended (the server's timeout, or its starting point expired): read the
		// execution again and watch from there.
		fresh, err := c.get(ctx, obj.Namespace, obj.Name)
		if err != nil {
			if apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("%s was deleted before it ended", name)
			}
			return nil, err
		}
		obj = fresh
	}
}

// watchUntil reads w until the execution is terminal, deleted, or the watch ends, calling show for
// each version; it returns the last version seen.
func watchUntil(ctx context.Context, w watch.Interface, show func(*v1alpha1.KubernetesExecution) error) (last *v1alpha1.KubernetesExecution, deleted bool, err error) {
	for {
		select {
		case <-ctx.Done():
			return last, false, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return last, false, nil
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				obj, ok := ev.Object.(*v1alpha1.KubernetesExecution)
				if !ok {
					continue
				}
				last = obj
				if err := show(obj); err != nil {
					return last, false, err
				}
				if obj.Status.Phase.IsTerminal() {
					return last, false, nil
				}
			case watch.Deleted:
				return last, true, nil
			case watch.Error:
				// Typically 410 Gone: the starting version is too old. The caller reads afresh.
				return last, false, nil
			}
		}
	}
}
