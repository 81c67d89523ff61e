package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// A target cluster's client has the registry's rate limit, whatever form its Secret takes:
// client-go's default (5 requests per second) would hold every target to about two executions
// per second.
func TestClusterClientsHaveTheManagersRateLimit(t *testing.T) {
	kubeconfig := []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://east.example:6443", certificate-authority-data: ""}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`)
	for name, data := range map[string]map[string][]byte{
		"server, CA and token": {v1alpha1.ClusterSecretServer: []byte("https://east.example:6443"), v1alpha1.ClusterSecretCA: []byte("ca"), v1alpha1.ClusterSecretToken: []byte("t")},
		"kubeconfig":           {v1alpha1.ClusterSecretKubeconfig: kubeconfig},
	} {
		for _, limit := range []struct {
			qps   float32
			burst int
		}{{50, 100}, {-1, 0}} {
			r := &ClusterRegistry{QPS: limit.qps, Burst: limit.burst}
			_, cfg, err := r.restConfig(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "east"}, Data: data})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if cfg.QPS != limit.qps || cfg.Burst != limit.burst {
				t.Errorf("%s: QPS %v, burst %d; want %v and %d", name, cfg.QPS, cfg.Burst, limit.qps, limit.burst)
			}
		}
	}
}
