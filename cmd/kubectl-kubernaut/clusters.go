package main

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

func newClustersCommand(g *globals) *cobra.Command {
	executorNamespace := "kubernaut-system"
	cmd := &cobra.Command{
		Use:   "clusters [--executor-namespace NS]",
		Short: "List the target clusters registered with the executor, and whether each answers",
		Long: `List the target clusters registered with the executor (Secrets labelled kubernaut.io/cluster=true
in its namespace): each cluster's name, its Secret, and what the executor last said of it
(Ready, Unreachable or Invalid, from the Events it records on the Secret), with the message.`,
		Example: `  kubectl kubernaut clusters
  kubectl kubernaut clusters --executor-namespace ops-executor`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringVar(&executorNamespace, "executor-namespace", executorNamespace, "The executor's namespace, where cluster Secrets live.")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := g.flags.ToRESTConfig()
		if err != nil {
			return err
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		meta, err := metadata.NewForConfig(cfg)
		if err != nil {
			return err
		}
		// The Secrets' metadata only: their credentials never leave the API server.
		secrets, err := meta.Resource(corev1.SchemeGroupVersion.WithResource("secrets")).Namespace(executorNamespace).List(cmd.Context(), metav1.ListOptions{
			LabelSelector: labels.SelectorFromSet(labels.Set{v1alpha1.LabelCluster: "true"}).String(),
		})
		if err != nil {
			return err
		}
		events, err := cs.EventsV1().Events(executorNamespace).List(cmd.Context(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		return writeClusters(g.streams.Out, clusterRows(secrets.Items, events.Items), time.Now())
	}
	return cmd
}

// clusterRow is one registered cluster as the plugin prints it.
type clusterRow struct {
	cluster, secret, status, message string
	since                            time.Time
}

// clusterRows pairs each cluster Secret with the executor's latest Event about it, sorted by
// cluster name. A Secret the executor has said nothing about yet is Unknown.
func clusterRows(secrets []metav1.PartialObjectMetadata, events []eventsv1.Event) []clusterRow {
	latest := map[string]*eventsv1.Event{}
	for i := range events {
		e := &events[i]
		if e.Regarding.Kind != "Secret" || statusOf(e.Reason) == e.Reason {
			continue // not the executor's word on a cluster
		}
		if cur, ok := latest[e.Regarding.Name]; !ok || eventTime(e).After(eventTime(cur)) {
			latest[e.Regarding.Name] = e
		}
	}
	rows := make([]clusterRow, 0, len(secrets))
	for _, s := range secrets {
		name := s.Name
		if n, ok := s.Annotations[v1alpha1.AnnotationClusterName]; ok {
			name = n
		}
		row := clusterRow{cluster: name, secret: s.Name, status: "Unknown", since: s.CreationTimestamp.Time}
		if e, ok := latest[s.Name]; ok {
			row.status, row.message, row.since = statusOf(e.Reason), e.Note, eventTime(e)
		}
		rows = append(rows, row)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].cluster < rows[j].cluster })
	return rows
}

// statusOf is the status an Event's reason reports: Ready, Unreachable, Invalid, or the reason.
func statusOf(reason string) string {
	switch reason {
	case "ClusterReady":
		return "Ready"
	case "ClusterUnreachable":
		return "Unreachable"
	case "ClusterInvalid":
		return "Invalid"
	}
	return reason
}

// eventTime is when an Event last happened.
func eventTime(e *eventsv1.Event) time.Time {
	switch {
	case e.Series != nil:
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.DeprecatedLastTimestamp.Time
}

func writeClusters(w io.Writer, rows []clusterRow, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if _, err := fmt.Fprintln(tw, "CLUSTER\tSECRET\tSTATUS\tSINCE\tMESSAGE"); err != nil {
		return err
	}
	for _, r := range rows {
		if _, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.cluster, r.secret, r.status, age(now.Sub(r.since)), r.message); err != nil {
			return err
		}
	}
	return tw.Flush()
}

// age is a duration as kubectl prints ages: 45s, 12m, 3h, 2d.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(int(d.Seconds()), 0))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
