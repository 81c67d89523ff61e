package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// AuditStatus is the delivery of an execution's audit event to the storage service.
type AuditStatus struct {
	// eventId identifies the event of the execution's outcome; the storage service recognises a
	// resend by it (the Idempotency-Key header).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	EventID string `json:"eventId,omitempty"`

	// attempts counts the deliveries tried.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Attempts int32 `json:"attempts,omitempty"`

	// lastAttemptTime is when the last delivery was tried.
	// +optional
	LastAttemptTime *metav1.Time `json:"lastAttemptTime,omitempty"`

	// deliveredTime is when the storage service acknowledged the event.
	// +optional
	DeliveredTime *metav1.Time `json:"deliveredTime,omitempty"`
}

// AuditFinalizer keeps a KubernetesExecution until its audit event is acknowledged by the
// storage service (or, past the operator's audit deadline, logged in full instead): the
// execution is the audit event's durable outbox.
const AuditFinalizer = "kubernaut.io/audit"

// ConditionAudited is True once the execution's audit event was delivered (or written to the
// log when no storage service is configured), False while delivery fails or after it was
// abandoned at the audit deadline.
const ConditionAudited = "Audited"

// Reasons of the Audited condition.
const (
	// ReasonAuditDelivered: the storage service acknowledged the event.
	ReasonAuditDelivered = "Delivered"
	// ReasonAuditLogged: no storage service is configured; the event went to the manager's log
	// and an Event.
	ReasonAuditLogged = "Logged"
	// ReasonAuditDeliveryFailed: the last delivery failed in a way a retry may fix (no answer,
	// 408, 429, 5xx); it is retried with backoff.
	ReasonAuditDeliveryFailed = "DeliveryFailed"
	// ReasonAuditRejected: the storage service refused the event (another 4xx), a defect on one
	// side; it is retried slowly, never dropped.
	ReasonAuditRejected = "Rejected"
	// ReasonAuditAbandoned: the audit deadline passed before delivery; the event was logged in
	// full and the execution released.
	ReasonAuditAbandoned = "Abandoned"
)
