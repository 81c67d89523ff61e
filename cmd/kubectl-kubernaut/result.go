package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

func newResultCommand(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "result NAME [-o json|yaml]",
		Short: "Print an execution's phase, result and attempts",
		Long: `Print an execution's phase and Ready condition, its action and target, who asked for it and who
approved it, the result of its last finished attempt, and a table of every attempt.

With -o json or -o yaml, print its status as such instead.`,
		Example: `  kubectl kubernaut result scale-deployment-x7k2p -n shop
  kubectl kubernaut result scale-deployment-x7k2p -n shop -o json | jq .result.data`,
		Args: oneArg("the execution's NAME"),
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: json or yaml (the status); human-readable when unset.")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if output != "" && output != "json" && output != "yaml" {
			return usageErrorf("--output %q: expected json or yaml", output)
		}
		ns, err := g.namespace()
		if err != nil {
			return err
		}
		c, err := g.client()
		if err != nil {
			return err
		}
		obj, err := c.get(cmd.Context(), ns, args[0])
		if err != nil {
			return err
		}
		switch output {
		case "json":
			raw, err := json.MarshalIndent(obj.Status, "", "  ")
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(g.streams.Out, "%s\n", raw)
			return err
		case "yaml":
			raw, err := yaml.Marshal(obj.Status)
			if err != nil {
				return err
			}
			_, err = g.streams.Out.Write(raw)
			return err
		}
		return writeResult(g.streams.Out, obj)
	}
	return cmd
}

// labelWidth is the width of the labels' column in writeResult's output.
const labelWidth = 14

// writeResult prints obj for a person: what it is, where it stands, its result and its attempts.
// The layout is stable: labels in a fixed order, times in RFC 3339 (UTC), one attempt per row.
func writeResult(w io.Writer, obj *v1alpha1.KubernetesExecution) error {
	var b bytes.Buffer
	st, spec := &obj.Status, &obj.Spec
	labeled(&b, 0, "Name", obj.Namespace+"/"+obj.Name)
	labeled(&b, 0, "Phase", orNone(string(st.Phase), "(none yet)"))
	if ready := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); ready != nil {
		labeled(&b, 0, "Ready", describeCondition(ready))
	}
	labeled(&b, 0, "Action", spec.Action.Type)
	if p := spec.Action.Parameters; p != nil && len(p.Raw) > 0 {
		labeled(&b, 0, "Parameters", compactJSON(p.Raw))
	}
	if spec.DryRun {
		labeled(&b, 0, "Dry run", "yes: the action reports what it would change and changes nothing")
	}
	labeled(&b, 0, "Target", describeTarget(spec.Action.Target))
	if a := spec.Admission; a != nil {
		labeled(&b, 0, "Requester", a.Requester.Username)
		if a.CreatedBy != nil {
			labeled(&b, 0, "Created by", a.CreatedBy.Username+" (on the requester's behalf)")
		}
	}
	if s := describeApproval(obj); s != "" {
		labeled(&b, 0, "Approval", s)
	}
	labeled(&b, 0, "Created", formatTime(&obj.CreationTimestamp))
	if waiting := st.Phase == v1alpha1.PhasePending || st.Phase == v1alpha1.PhaseAwaitingApproval; waiting && st.WaitingSince != nil {
		labeled(&b, 0, "Waiting since", formatTime(st.WaitingSince))
	}
	if st.StartTime != nil {
		labeled(&b, 0, "Started", formatTime(st.StartTime))
	}
	if st.CompletionTime != nil {
		labeled(&b, 0, "Ended", formatTime(st.CompletionTime))
	}
	if st.Phase == v1alpha1.PhaseRetrying && st.NextRetryTime != nil {
		labeled(&b, 0, "Next retry", formatTime(st.NextRetryTime))
	}
	writeOutcome(&b, st.Result)
	writeAttempts(&b, st.Attempts)
	_, err := w.Write(b.Bytes())
	return err
}

// writeOutcome prints the result of the last finished attempt.
func writeOutcome(b *bytes.Buffer, r *v1alpha1.ExecutionResult) {
	if r == nil {
		labeled(b, 0, "Result", "none yet")
		return
	}
	b.WriteString("Result:\n")
	labeled(b, 2, "Success", fmt.Sprint(r.Success))
	if r.ExitCode != nil {
		labeled(b, 2, "Exit code", fmt.Sprint(*r.ExitCode))
	}
	if r.StartTime != nil {
		labeled(b, 2, "Started", formatTime(r.StartTime))
	}
	if r.EndTime != nil {
		labeled(b, 2, "Ended", formatTime(r.EndTime))
	}
	if d := duration(r.StartTime, r.EndTime); d != "" {
		labeled(b, 2, "Duration", d)
	}
	if r.Output != "" {
		labeled(b, 2, "Output", r.Output)
	}
	if r.Error != "" {
		labeled(b, 2, "Error", r.Error)
	}
	if u := r.ResourceUsage; u != nil {
		labeled(b, 2, "Resources", fmt.Sprintf("%dms CPU, %s peak memory", u.CPUMillis, bytesSize(u.PeakMemoryBytes)))
	}
	if r.Data != nil && len(r.Data.Raw) > 0 {
		b.WriteString("  Data:\n")
		var indented bytes.Buffer
		if err := json.Indent(&indented, r.Data.Raw, "", "  "); err != nil {
			indented.Reset()
			indented.Write(r.Data.Raw)
		}
		for _, line := range strings.Split(strings.TrimRight(indented.String(), "\n"), "\n") {
			b.WriteString("    " + line + "\n")
		}
	}
}

// writeAttempts prints one row per attempt. A message is flattened to one line; -o yaml shows it
// as the action wrote it.
func writeAttempts(b *bytes.Buffer, attempts []v1alpha1.Attempt) {
	if len(attempts) == 0 {
		labeled(b, 0, "Attempts", "none")
		return
	}
	b.WriteString("Attempts:\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "  #\tJOB\tSTARTED\tENDED\tDURATION\tEXIT\tREASON\tMESSAGE")
	for _, a := range attempts {
		exit := "-"
		if a.ExitCode != nil {
			exit = fmt.Sprint(*a.ExitCode)
		}
		_, _ = fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Number, orNone(a.JobName, "-"),
			orNone(formatTime(a.StartTime), "-"), orNone(formatTime(a.EndTime), "-"), orNone(duration(a.StartTime, a.EndTime), "-"),
			exit, orNone(a.Reason, "-"), strings.Join(strings.Fields(a.Message), " "))
	}
	_ = tw.Flush()
}

// labeled writes "Label:   value", indented by indent, the values of every level in one column,
// and a value's further lines under its first.
func labeled(b *bytes.Buffer, indent int, label, value string) {
	head := fmt.Sprintf("%s%-*s", strings.Repeat(" ", indent), labelWidth-indent, label+":")
	cont := strings.Repeat(" ", labelWidth)
	for i, line := range strings.Split(strings.TrimRight(value, "\n"), "\n") {
		if i == 0 {
			b.WriteString(strings.TrimRight(head+" "+line, " ") + "\n")
		} else {
			b.WriteString(strings.TrimRight(cont+" "+line, " ") + "\n")
		}
	}
}

func describeCondition(c *metav1.Condition) string {
	s := string(c.Status)
	if c.Reason != "" {
		s += ", " + c.Reason
	}
	if c.Message != "" {
		s += ": " + c.Message
	}
	return s
}

func describeTarget(t v1alpha1.TargetSpec) string {
	if t.Namespace == "" {
		return t.ResourceKind + " " + t.ResourceName
	}
	return t.ResourceKind + " " + t.Namespace + "/" + t.ResourceName
}

// describeApproval says where the execution's approval stands: the decision the webhook recorded,
// or the Approved condition when there is no record (while waiting, or when the wait timed out);
// "" when it never needed approval.
func describeApproval(obj *v1alpha1.KubernetesExecution) string {
	if a := obj.Status.Approval; a != nil {
		s := fmt.Sprintf("%s by %s at %s", a.Decision, a.Approver.Username, formatTime(&a.Time))
		if a.Reason != "" {
			s += ": " + a.Reason
		}
		return s
	}
	c := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionApproved)
	switch {
	case c == nil:
		return ""
	case c.Status == metav1.ConditionUnknown:
		return fmt.Sprintf("awaiting a decision (kubectl kubernaut approve|deny %s -n %s)", obj.Name, obj.Namespace)
	default:
		return fmt.Sprintf("%s at %s", describeCondition(c), formatTime(&c.LastTransitionTime))
	}
}

func formatTime(t *metav1.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// duration is end-start, or "" when either is unknown.
func duration(start, end *metav1.Time) string {
	if start == nil || end == nil || start.IsZero() || end.IsZero() {
		return ""
	}
	return end.Sub(start.Time).String()
}

func compactJSON(raw []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

func bytesSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}
