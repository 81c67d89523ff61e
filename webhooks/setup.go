package webhooks

import (
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/access"
	"github.com/kubernaut/kubernaut-executor/internal/validation"
)

// Config is what the webhooks need from the manager.
type Config struct {
	// Validator is shared with the controller, so that each schema is compiled once.
	Validator *validation.Validator
	// CeilingName is the aggregated ClusterRole that bounds every template's rules.
	CeilingName string
	// Reviewer answers the requester's SubjectAccessReviews (the manager's client when nil).
	Reviewer access.Creator
	// Clock stamps approvers' decisions (default the real clock).
	Clock clock.PassiveClock
	// Clusters are the registered target clusters.
	Clusters Clusters
}

// Setup registers the webhooks with mgr's webhook server: the validating ones, the requester
// record and the approval record.
func Setup(mgr ctrl.Manager, cfg Config) error {
	if cfg.Reviewer == nil {
		cfg.Reviewer = mgr.GetClient()
	}
	if err := ctrl.NewWebhookManagedBy(mgr, &v1alpha1.KubernetesExecution{}).WithValidator(&KubernetesExecutionValidator{
		Reader: mgr.GetClient(), Mapper: mgr.GetRESTMapper(), Reviewer: cfg.Reviewer, Validator: cfg.Validator,
		Clusters: cfg.Clusters,
	}).Complete(); err != nil {
		return err
	}
	mgr.GetWebhookServer().Register(AdmissionRecorderPath, &webhook.Admission{Handler: &AdmissionRecorder{Reader: mgr.GetClient(), Reviewer: cfg.Reviewer}})
	mgr.GetWebhookServer().Register(ApprovalRecorderPath, &webhook.Admission{Handler: &ApprovalRecorder{Clock: cfg.Clock}})
	return ctrl.NewWebhookManagedBy(mgr, &v1alpha1.ActionTemplate{}).WithValidator(&ActionTemplateValidator{
		Reader: mgr.GetAPIReader(), CeilingName: cfg.CeilingName,
	}).Complete()
}
