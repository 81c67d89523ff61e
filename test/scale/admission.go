package scale

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

// validatePath is where the manager serves the KubernetesExecution validating webhook.
const validatePath = "/validate-kubernetesexecution-kubernaut-io-v1alpha1-kubernetesexecution"

// The administrator the local control plane's kubeconfig authenticates as: the requester of
// every benchmark execution.
var adminUser = authenticationv1.UserInfo{Username: "local-admin", Groups: []string{"system:masters", "system:authenticated"}}

// concurrently runs do total times from clients goroutines (after one warm-up call each) and
// returns each call's latency.
func concurrently(ctx context.Context, clients, total int, do func(i int) error) ([]time.Duration, error) {
	for i := range clients {
		if err := do(-1 - i); err != nil {
			return nil, err
		}
	}
	lat := make([]time.Duration, total)
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= total || ctx.Err() != nil {
					return
				}
				start := time.Now()
				if err := do(i); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				lat[i] = time.Since(start)
			}
		})
	}
	wg.Wait()
	return lat, firstErr
}

// admissionAtWebhook sends AdmissionReviews for a new execution of tpl, as the API server sends
// them once the mutating webhook has recorded the requester, straight to the validating
// webhook. Its SubjectAccessReviews still go to the API server.
func admissionAtWebhook(ctx context.Context, wh localcluster.WebhookServing, tpl *v1alpha1.ActionTemplate, ns string,
	params map[string]any, clients, total int) ([]time.Duration, error) {
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	obj := execution(ns, "admission", tpl.Name, string(raw))
	obj.APIVersion, obj.Kind = v1alpha1.GroupVersion.String(), "KubernetesExecution"
	obj.Spec.Admission = &v1alpha1.AdmissionRecord{
		Requester:   v1alpha1.UserInfo{Username: adminUser.Username, Groups: adminUser.Groups},
		TemplateUID: tpl.UID, TemplateGeneration: tpl.Generation,
	}
	body, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{
		MaxIdleConnsPerHost: clients,
		// The webhook's certificate is the local control plane's, made for this run; the
		// benchmark measures latency on loopback and sends nothing secret.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // see above
	}
	defer transport.CloseIdleConnections()
	hc := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	url := "https://" + net.JoinHostPort(wh.Host, strconv.Itoa(wh.Port)) + validatePath
	return concurrently(ctx, clients, total, func(i int) error {
		review, err := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID:       types.UID(strconv.Itoa(i)),
				Kind:      metav1.GroupVersionKind{Group: v1alpha1.GroupVersion.Group, Version: v1alpha1.GroupVersion.Version, Kind: "KubernetesExecution"},
				Resource:  metav1.GroupVersionResource{Group: v1alpha1.GroupVersion.Group, Version: v1alpha1.GroupVersion.Version, Resource: "kubernetesexecutions"},
				Namespace: ns, Name: obj.Name, Operation: admissionv1.Create, UserInfo: adminUser,
				Object: runtime.RawExtension{Raw: body},
			},
		})
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(review))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		var out admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return fmt.Errorf("the webhook answered %s: %w", resp.Status, err)
		}
		if out.Response == nil || !out.Response.Allowed {
			return fmt.Errorf("the webhook refused the benchmark's execution: %+v", out.Response)
		}
		return nil
	})
}

// admissionThroughAPIServer creates executions of the wide template with a server-side dry run:
// the API server runs the mutating and validating webhooks and its admission policies, and
// stores nothing.
func admissionThroughAPIServer(ctx context.Context, k8s client.Client, ns string, params map[string]any, clients, total int) ([]time.Duration, error) {
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	return concurrently(ctx, clients, total, func(i int) error {
		obj := execution(ns, fmt.Sprintf("admission-%d", i+clients), WideTemplate, string(raw))
		return k8s.Create(ctx, obj, client.DryRunAll)
	})
}
