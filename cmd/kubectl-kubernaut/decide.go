package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// defaultApproveMessage is the Approved condition's message when approve is given no --reason.
const defaultApproveMessage = "Approved with kubectl-kubernaut"

func newDecideCommand(g *globals, approve bool) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "approve NAME [--reason TEXT]",
		Short: "Approve an execution that waits for approval",
		Long: `Approve an execution that waits for approval (phase AwaitingApproval).

The decision is the execution's Approved condition, set through its status subresource: you need
the approve verb on kubernetesexecutions and patch on kubernetesexecutions/status, and you may not
approve an execution you asked for. The executor records who decided, when and why.`,
		Example: `  kubectl kubernaut approve drain-node-7fq2x -n ops --reason "maintenance window CHG-1234"`,
		Args:    oneArg("the execution's NAME"),
	}
	if !approve {
		cmd.Use = "deny NAME --reason TEXT"
		cmd.Short = "Deny an execution that waits for approval"
		cmd.Long = `Deny an execution that waits for approval (phase AwaitingApproval). It fails with reason
Denied and your reason as its message; nothing runs.

Denying needs the same rights as approving: the approve verb on kubernetesexecutions and patch on
kubernetesexecutions/status.`
		cmd.Example = `  kubectl kubernaut deny drain-node-7fq2x -n ops --reason "not during the release freeze"`
	}
	if approve {
		cmd.Flags().StringVar(&reason, "reason", "", `Why you approve; the Approved condition's message (default "`+defaultApproveMessage+`").`)
	} else {
		cmd.Flags().StringVar(&reason, "reason", "", "Why you deny; the Approved condition's message and the execution's failure message. Required.")
		_ = cmd.MarkFlagRequired("reason")
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if !approve && strings.TrimSpace(reason) == "" {
			return usageErrorf("--reason must say why the execution is denied")
		}
		if approve && strings.TrimSpace(reason) == "" {
			reason = defaultApproveMessage
		}
		ns, err := g.namespace()
		if err != nil {
			return err
		}
		c, err := g.client()
		if err != nil {
			return err
		}
		if err := setApproval(cmd.Context(), c, ns, args[0], approve, reason); err != nil {
			return err
		}
		_, err = fmt.Fprintf(g.streams.Out, "kubernetesexecution %s/%s %s\n", ns, args[0], decisionWord(approve))
		return err
	}
	return cmd
}

// setApproval reads the execution, checks that it waits for approval, and patches its status
// with only the Approved condition changed, on the version it read: a decision never lands on an
// execution that changed since (another approver's decision, the timeout), and when the manager
// updated its status in between, the check runs again on the new version.
func setApproval(ctx context.Context, c *executions, ns, name string, approve bool, reason string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj, err := c.get(ctx, ns, name)
		if err != nil {
			return err
		}
		decided, err := decide(obj, approve, reason, metav1.NewTime(time.Now()))
		if err != nil {
			return err
		}
		_, err = c.patchConditions(ctx, obj, decided.Status.Conditions)
		return err
	})
}

// decide returns a copy of obj with its Approved condition set to the decision (True to approve,
// False to deny) with reason as its message, or an error saying why obj cannot be decided on.
func decide(obj *v1alpha1.KubernetesExecution, approve bool, reason string, now metav1.Time) (*v1alpha1.KubernetesExecution, error) {
	if err := awaitingApproval(obj); err != nil {
		return nil, err
	}
	cond := metav1.Condition{
		Type: v1alpha1.ConditionApproved, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonApproved,
		Message: reason, LastTransitionTime: now, ObservedGeneration: obj.Generation,
	}
	if !approve {
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha1.ReasonDenied
	}
	decided := obj.DeepCopy()
	// In place, so that the list keeps its order and differs from the stored one in this
	// condition only.
	for i := range decided.Status.Conditions {
		if decided.Status.Conditions[i].Type == v1alpha1.ConditionApproved {
			decided.Status.Conditions[i] = cond
			return decided, nil
		}
	}
	decided.Status.Conditions = append(decided.Status.Conditions, cond)
	return decided, nil
}

// awaitingApproval returns nil when obj waits for a decision, else an error that says why not:
// who decided already, or which phase it is in.
func awaitingApproval(obj *v1alpha1.KubernetesExecution) error {
	name := fmt.Sprintf("kubernetesexecution %s/%s", obj.Namespace, obj.Name)
	if a := obj.Status.Approval; a != nil {
		msg := fmt.Sprintf("%s was already %s by %s at %s", name, strings.ToLower(string(a.Decision)), a.Approver.Username, formatTime(&a.Time))
		if a.Reason != "" {
			msg += ": " + a.Reason
		}
		return exitError{code: exitFailed, msg: msg}
	}
	cond := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionApproved)
	if cond != nil && cond.Status != metav1.ConditionUnknown {
		return exitError{code: exitFailed, msg: fmt.Sprintf("%s is no longer awaiting approval: its Approved condition has been %s since %s (%s: %s)",
			name, cond.Status, formatTime(&cond.LastTransitionTime), cond.Reason, cond.Message)}
	}
	switch obj.Status.Phase {
	case v1alpha1.PhaseAwaitingApproval:
		return nil
	case "":
		return exitError{code: exitFailed, msg: name + " has no phase yet: the executor has not taken it up; try again in a moment"}
	default:
		return exitError{code: exitFailed, msg: fmt.Sprintf("%s does not need approval: its phase is %s", name, obj.Status.Phase)}
	}
}

func decisionWord(approve bool) string {
	if approve {
		return "approved"
	}
	return "denied"
}
