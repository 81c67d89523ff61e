package controllers_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
)

// The writes of one successful execution, counted by the suite's write log (every write the
// manager's client stores) and listed with their reasons in docs/performance.md: a new write,
// or one written twice, fails this spec.
var _ = Describe("Writes per execution", func() {
	It("are exactly these for a successful execution, in this order", func(ctx SpecContext) {
		ensureTemplate(ctx, testTemplate, "kubernaut-actions")
		ns := newNamespace(ctx)
		obj := newExecution(ns, "counted", `{}`)
		reconcilesBefore := reconciles()
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) {
			got := get(ctx, obj)(g)
			g.Expect(got.Status.Phase).To(Equal(v1alpha1.PhaseCompleted))
			g.Expect(got.Finalizers).To(BeEmpty())
			g.Expect(meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionAudited)).NotTo(BeNil())
		}).Should(Succeed())

		grant := "kubernaut-exec." + ns + ".counted." + string(obj.UID)[:8]
		sa := controllers.ExecutionServiceAccountName(obj.Name)
		ofExecution := func() []write { return writes.matching(func(w write) bool { return w.Namespace == ns }) }
		// Nothing more comes: no write while the finished execution is reconciled again (its own
		// writes' events, its Job's end, its pod's, the requeues).
		Eventually(func() []write { return ofExecution() }).Should(HaveLen(14))
		Consistently(func() []write { return ofExecution() }, "3s").Should(HaveLen(14))
		got := ofExecution()
		// For the record (other specs' executions may add to it when run together): how many
		// passes the execution took.
		AddReportEntry("execution reconciles", reconciles()-reconcilesBefore)

		// Starting the attempt, in the one pass that finds the execution new.
		Expect(got[:9]).To(Equal([]write{
			{"patch", "KubernetesExecution", ns, obj.Name},                 // the grant finalizer, before any grant
			{"create", "SubjectAccessReview", ns, "get deployments web"},   // the requester may still do
			{"create", "SubjectAccessReview", ns, "patch deployments web"}, // every permission of the grant
			{"create", "ServiceAccount", ns, sa},                           // the action's own identity
			{"create", "Role", ns, grant},                                  // the grant, narrowed to the target
			{"create", "RoleBinding", ns, grant},                           // given to the identity
			{"create", "Job", ns, obj.Name + "-1"},                         // the attempt
			{"patch", "KubernetesExecution/status", ns, obj.Name},          // Running, the attempt recorded
			{"patch", "KubernetesExecution/status", ns, obj.Name},          // Completed, with the result
		}))
		// Then two controllers at once: the audit (no storage service here: the event goes to the
		// log, and Audited to the status) and the execution controller, which starts the ended
		// Job's TTL now that its outcome is recorded and then revokes, in its own order.
		end := got[9:]
		Expect(end).To(ConsistOf(
			write{"patch", "KubernetesExecution/status", ns, obj.Name},
			write{"patch", "Job", ns, obj.Name + "-1"},
			write{"delete", "Role", ns, grant},
			write{"delete", "ServiceAccount", ns, sa},
			write{"patch", "KubernetesExecution", ns, obj.Name},
		))
		var revocation []write
		for _, w := range end {
			if w.Kind != "KubernetesExecution/status" {
				revocation = append(revocation, w)
			}
		}
		Expect(revocation).To(Equal([]write{
			{"patch", "Job", ns, obj.Name + "-1"}, // its TTL, once the outcome is recorded
			{"delete", "Role", ns, grant},
			{"delete", "ServiceAccount", ns, sa},
			{"patch", "KubernetesExecution", ns, obj.Name}, // the finalizer, once nothing is granted
		}))

		// And one Event per step, through the manager's event recorder (--events=all).
		Eventually(func(g Gomega) []string {
			events := &eventsv1.EventList{}
			g.Expect(k8s.List(ctx, events, client.InNamespace(ns))).To(Succeed())
			var reasons []string
			for _, e := range events.Items {
				if e.Regarding.Name == obj.Name && e.Type == corev1.EventTypeNormal && e.Series == nil {
					reasons = append(reasons, e.Reason)
				}
			}
			return reasons
		}).Should(ConsistOf(v1alpha1.ReasonProgressing, v1alpha1.ReasonSucceeded, v1alpha1.ReasonAuditLogged))
	})
})

// reconciles is how many times the manager has reconciled executions, whatever the result.
func reconciles() int {
	families, err := metrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	n := 0.0
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "kubernetesexecution" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return int(n)
}
