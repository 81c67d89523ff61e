package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// ApprovalRecorder records an approver's decision on an execution that waits for approval. The
// approver decides by setting the execution's Approved condition from Unknown to True (approved)
// or False (denied), with their reason as the condition's message, through the status
// subresource, as cert-manager's CertificateRequests are approved. The recorder adds who decided
// and when (status.approval) to that same write, so the decision and its record are stored
// together or not at all: the webhook fails closed, and the status admission policy refuses a
// decision without a record that names the writer.
//
// Whether the writer may decide at all (the approve verb on the execution, not its requester,
// only while it waits, nothing else changed) is the status admission policy's to enforce: the
// API server evaluates it itself, so it holds even when no webhook answers. The recorder only
// records, and refuses a reason longer than the record may hold. The manager's own status
// writes, its timeout of the wait included, never reach it (the webhook's match condition).
type ApprovalRecorder struct {
	// Clock stamps the decision (default the real clock).
	Clock clock.PassiveClock
}

// +kubebuilder:webhook:path=/mutate-kubernetesexecution-kubernaut-io-v1alpha1-kubernetesexecution-status,mutating=true,failurePolicy=fail,sideEffects=None,groups=kubernetesexecution.kubernaut.io,resources=kubernetesexecutions/status,verbs=update,versions=v1alpha1,name=mkubernetesexecution-approval.kubernaut.io,admissionReviewVersions=v1,timeoutSeconds=5,reinvocationPolicy=Never,patch=`{"matchConditions":[{"name":"not-the-manager","expression":"request.userInfo.username != 'system:serviceaccount:kubernaut-system:kubernaut-executor'"}]}`

// ApprovalRecorderPath is where the API server sends the requests ApprovalRecorder answers.
const ApprovalRecorderPath = "/mutate-kubernetesexecution-kubernaut-io-v1alpha1-kubernetesexecution-status"

// maxReasonLength is the longest reason status.approval holds (its reason field's MaxLength).
const maxReasonLength = 1024

var _ admission.Handler = &ApprovalRecorder{}

// Handle answers one admission request.
func (a *ApprovalRecorder) Handle(_ context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Update || req.SubResource != "status" {
		return admission.Allowed("")
	}
	obj, old := &v1alpha1.KubernetesExecution{}, &v1alpha1.KubernetesExecution{}
	if err := json.Unmarshal(req.Object.Raw, obj); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the execution: %w", err))
	}
	if err := json.Unmarshal(req.OldObject.Raw, old); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the stored execution: %w", err))
	}
	i, decision, ok := decided(old, obj)
	if !ok {
		// Not a decision: the status policy refuses it, whatever this webhook answers.
		return admission.Allowed("")
	}
	cond := obj.Status.Conditions[i]
	if len(cond.Message) > maxReasonLength {
		return denied(invalid(obj, field.ErrorList{field.TooLong(
			field.NewPath("status", "conditions").Index(i).Child("message"), "", maxReasonLength)}))
	}
	clk := a.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	// Whole seconds, as the API server stores times: the record reads back as it was written.
	now := metav1.NewTime(clk.Now().UTC().Truncate(1e9))
	record := v1alpha1.ApprovalRecord{Decision: decision, Approver: UserInfoOf(req.UserInfo), Time: now, Reason: cond.Message}
	patches := []jsonpatch.Operation{jsonpatch.NewOperation("add", "/status/approval", record)}
	// A plain kubectl apply of the condition keeps the time it became Unknown; the transition
	// is now.
	if prev := approvedCondition(old); prev != nil && cond.LastTransitionTime.Equal(&prev.LastTransitionTime) {
		patches = append(patches, jsonpatch.NewOperation("replace", fmt.Sprintf("/status/conditions/%d/lastTransitionTime", i), now))
	}
	return admission.Patched("", patches...)
}

// decided reports whether the update from old to obj is a decision on an execution that waits
// for approval: no decision recorded yet, and the Approved condition (at index i of obj's
// conditions) set from Unknown to True or False.
func decided(old, obj *v1alpha1.KubernetesExecution) (i int, decision v1alpha1.ApprovalDecision, ok bool) {
	prev := approvedCondition(old)
	if old.Status.Approval != nil || prev == nil || prev.Status != metav1.ConditionUnknown {
		return 0, "", false
	}
	for i, c := range obj.Status.Conditions {
		if c.Type != v1alpha1.ConditionApproved {
			continue
		}
		switch c.Status {
		case metav1.ConditionTrue:
			return i, v1alpha1.DecisionApproved, true
		case metav1.ConditionFalse:
			return i, v1alpha1.DecisionDenied, true
		}
		return 0, "", false
	}
	return 0, "", false
}

// approvedCondition returns obj's Approved condition, nil when it has none.
func approvedCondition(obj *v1alpha1.KubernetesExecution) *metav1.Condition {
	for i := range obj.Status.Conditions {
		if obj.Status.Conditions[i].Type == v1alpha1.ConditionApproved {
			return &obj.Status.Conditions[i]
		}
	}
	return nil
}
