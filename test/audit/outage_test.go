package audit_test

import (
	"fmt"
	"os"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/internal/audit"
	"github.com/kubernaut/kubernaut-executor/internal/manager"
	"github.com/kubernaut/kubernaut-executor/test/auditreceiver"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
	"github.com/kubernaut/kubernaut-executor/test/localcluster"
)

// The full outage figure needs hundreds of executions, more than the node agent runs processes
// for on a small machine: here kwok finishes the action pods (no process per pod), on a control
// plane of its own, with a manager of its own that sends to the same storage service.
var _ = Describe("Audit through an outage, at scale (pods simulated by kwok)", Ordered, func() {
	var (
		sim *e2eutil.Installed
		kc  client.Client
		ns  = "outage-at-scale"
	)

	BeforeAll(func(ctx SpecContext) {
		kwok, err := e2eutil.KwokBinary()
		Expect(err).NotTo(HaveOccurred())
		sender, err := audit.NewSender(audit.Config{URL: storage.URL, Timeout: 2 * time.Second})
		Expect(err).NotTo(HaveOccurred())
		sim, err = e2eutil.StartInstalledOn(ctx, "audit-kwok", localcluster.Options{Kwok: kwok}, controllers.ExecutorOptions{
			Backoff: controllers.Backoff{Base: time.Second, Max: 2 * time.Second}, JobTTL: time.Hour,
		}, func(o *manager.Options) {
			o.Audit = controllers.AuditOptions{Sink: sender}
			o.SkipNameValidation = true // the suite's other manager runs in this process too
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(sim.Stop()).To(Succeed()) })
		kc = sim.Client
		Expect(kc.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		Expect(kc.Create(ctx, e2eutil.IdleDeployment(ns, "web"))).To(Succeed())
		tpl := &v1alpha1.ActionTemplate{
			ObjectMeta: metav1.ObjectMeta{Name: "audited-action"},
			Spec: v1alpha1.ActionTemplateSpec{
				// kwok ends the pod as its first argument says: anything but fail, exit-2 or
				// hang succeeds.
				Image: "kubernaut-actions", Args: []string{"ok"}, TargetKinds: []string{"Deployment"},
				// It changes nothing: the 300 executions, which share a target, run side by side.
				Mutating:   ptr.To(false),
				Parameters: execution(ns, "", "", auditedSchema).Spec.Action.Parameters,
			},
		}
		Expect(kc.Create(ctx, tpl)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(kc.Get(ctx, client.ObjectKeyFromObject(tpl), tpl)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(tpl.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
		}).Should(Succeed())
	}, NodeTimeout(4*time.Minute))

	It("stores all of 300 executions' events exactly once when the storage service was down for the whole run", func(ctx SpecContext) {
		n := 300 // AUDIT_OUTAGE_EXECUTIONS overrides it
		if v, err := strconv.Atoi(os.Getenv("AUDIT_OUTAGE_EXECUTIONS")); err == nil && v > 0 {
			n = v
		}
		name := func(i int) string { return fmt.Sprintf("scale-outage-%03d", i) }
		Expect(receiver.SetFault(auditreceiver.Fault{Mode: auditreceiver.ModeFail, Status: 503})).To(Succeed())
		DeferCleanup(func() { Expect(receiver.SetFault(auditreceiver.Fault{})).To(Succeed()) })
		before := receiver.State().Counters.Stored
		for i := range n {
			Expect(kc.Create(ctx, execution(ns, name(i), "audited-action", `{"output":"done","password":"`+secret+`"}`))).To(Succeed())
		}
		// Every execution ends while the storage service is down, each holding its event.
		start := time.Now()
		Eventually(func(g Gomega) {
			list := &v1alpha1.KubernetesExecutionList{}
			g.Expect(kc.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			g.Expect(list.Items).To(HaveLen(n))
			for _, e := range list.Items {
				g.Expect(e.Status.Phase).To(Equal(v1alpha1.PhaseCompleted), e.Name)
				g.Expect(meta.IsStatusConditionFalse(e.Status.Conditions, v1alpha1.ConditionAudited)).To(BeTrue(), e.Name)
				g.Expect(e.Finalizers).To(ContainElement(v1alpha1.AuditFinalizer), e.Name)
			}
		}, 10*time.Minute, time.Second).Should(Succeed())
		GinkgoWriter.Printf("%d executions ended in %s with the storage service down\n", n, time.Since(start).Round(time.Millisecond))
		Expect(receiver.State().Counters.Stored).To(Equal(before), "nothing was stored while the service was down")

		Expect(receiver.SetFault(auditreceiver.Fault{})).To(Succeed())
		start = time.Now()
		Eventually(func(g Gomega) {
			list := &v1alpha1.KubernetesExecutionList{}
			g.Expect(kc.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			for _, e := range list.Items {
				g.Expect(e.Finalizers).NotTo(ContainElement(v1alpha1.AuditFinalizer), e.Name)
				g.Expect(meta.IsStatusConditionTrue(e.Status.Conditions, v1alpha1.ConditionAudited)).To(BeTrue(), e.Name)
			}
		}, 10*time.Minute, time.Second).Should(Succeed())
		GinkgoWriter.Printf("%d audit events delivered %s after the storage service came back\n", n, time.Since(start).Round(time.Millisecond))
		Expect(receiver.State().Counters.Stored - before).To(Equal(n))
		for i := range n {
			events := stored(name(i))
			Expect(events).To(HaveLen(1), name(i))
			Expect(events[0].Phase).To(Equal("Completed"))
			Expect(string(events[0].Parameters)).To(ContainSubstring(`"password":"<redacted>"`))
		}
	})
})
