package main

import (
	"bytes"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

func TestClusterRows(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	secret := func(name, cluster string) metav1.PartialObjectMetadata {
		s := metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0)}}
		if cluster != "" {
			s.Annotations = map[string]string{v1alpha1.AnnotationClusterName: cluster}
		}
		return s
	}
	event := func(secret, reason, note string, at time.Time) eventsv1.Event {
		return eventsv1.Event{Regarding: corev1.ObjectReference{Kind: "Secret", Name: secret}, Reason: reason, Note: note, EventTime: metav1.NewMicroTime(at)}
	}
	rows := clusterRows(
		[]metav1.PartialObjectMetadata{secret("cluster-west", "west"), secret("east", ""), secret("cluster-new", "new")},
		[]eventsv1.Event{
			event("east", "ClusterReady", "Cluster east is connected", t0.Add(time.Minute)),
			event("east", "ClusterUnreachable", "Cluster east is unreachable: timeout", t0.Add(3*time.Minute)),
			event("cluster-west", "ClusterReady", "Cluster west is connected", t0.Add(2*time.Minute)),
			// Not the executor's word on a cluster: ignored.
			event("cluster-west", "Updated", "someone changed it", t0.Add(4*time.Minute)),
			{Regarding: corev1.ObjectReference{Kind: "Pod", Name: "east"}, Reason: "ClusterInvalid", EventTime: metav1.NewMicroTime(t0.Add(5 * time.Minute))},
		})
	var out bytes.Buffer
	if err := writeClusters(&out, rows, t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	want := `CLUSTER  SECRET        STATUS       SINCE  MESSAGE
east     east          Unreachable  7m     Cluster east is unreachable: timeout
new      cluster-new   Unknown      10m    
west     cluster-west  Ready        8m     Cluster west is connected
`
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}
