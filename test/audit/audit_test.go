package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/internal/audit"
	"github.com/kubernaut/kubernaut-executor/test/auditreceiver"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
)

// secret is a parameter value marked sensitive in the template's schema: it must never reach
// the storage service.
const secret = "hunter2-very-secret"

// auditedSchema is the test action's parameters, with one sensitive property.
const auditedSchema = `{"type":"object","additionalProperties":false,"properties":{
	"output":{"type":"string"},"fail":{"type":"boolean"},"sleepSeconds":{"type":"integer","minimum":0},
	"password":{"type":"string","x-kubernaut-sensitive":true}}}`

func ensureTemplate(ctx context.Context, name string) *v1alpha1.ActionTemplate {
	tpl := &v1alpha1.ActionTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.ActionTemplateSpec{
			Image: "kubernaut-actions", Args: []string{"test-action"}, TargetKinds: []string{"Deployment"},
			Parameters: &apiextensionsv1.JSON{Raw: []byte(auditedSchema)},
			// It changes nothing: the suite's executions, which share a target, run side by side.
			Mutating: ptr.To(false),
		},
	}
	if err := k8s.Create(ctx, tpl); !apierrors.IsAlreadyExists(err) {
		Expect(err).NotTo(HaveOccurred())
	}
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tpl), tpl)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(tpl.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
	}).Should(Succeed())
	return tpl
}

func execution(ns, name, action, params string) *v1alpha1.KubernetesExecution {
	return &v1alpha1.KubernetesExecution{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.KubernetesExecutionSpec{
			MaxRetries: ptr.To[int32](0),
			Action: v1alpha1.ActionSpec{
				Type: action, Parameters: &apiextensionsv1.JSON{Raw: []byte(params)},
				Target: v1alpha1.TargetSpec{Namespace: ns, ResourceKind: "Deployment", ResourceName: "web"},
			},
		},
	}
}

// gone waits until the execution no longer exists, and returns its last stored version.
func ended(ctx context.Context, obj *v1alpha1.KubernetesExecution) *v1alpha1.KubernetesExecution {
	got := &v1alpha1.KubernetesExecution{}
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(obj), got)).To(Succeed())
		g.Expect(got.Status.Phase.IsTerminal()).To(BeTrue(), "phase %s", got.Status.Phase)
		g.Expect(got.Finalizers).NotTo(ContainElement(v1alpha1.AuditFinalizer))
	}, 90*time.Second).Should(Succeed())
	return got
}

// stored returns the events the storage service holds for an execution.
func stored(name string) []audit.Event {
	var out []audit.Event
	for _, raw := range receiver.Events(name) {
		Expect(bytes.Contains(raw, []byte(secret))).To(BeFalse(), "a sensitive parameter reached the storage service: %s", raw)
		ev := audit.Event{}
		Expect(json.Unmarshal(raw, &ev)).To(Succeed())
		out = append(out, ev)
	}
	return out
}

// backlog reads the manager's kubernaut_audit_backlog gauge.
func backlog() float64 {
	families, err := metrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() == "kubernaut_audit_backlog" {
			return gaugeValue(f.GetMetric())
		}
	}
	return -1
}

func gaugeValue(ms []*dto.Metric) float64 {
	if len(ms) == 0 {
		return -1
	}
	return ms[0].GetGauge().GetValue()
}

var _ = Describe("Audit", func() {
	var ns string
	BeforeEach(func(ctx SpecContext) {
		var err error
		ns, err = cluster.Namespace(ctx, "audit", nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, e2eutil.IdleDeployment(ns, "web"))).To(Succeed())
		ensureTemplate(ctx, "audited-action")
		Expect(receiver.SetFault(auditreceiver.Fault{})).To(Succeed())
	})

	It("sends one event per ended execution, with its outcome, requester, template generation and resource usage, sensitive values redacted", func(ctx SpecContext) {
		cases := []struct {
			name, params string
			dryRun       bool
			phase        string
		}{
			{"succeeds", fmt.Sprintf(`{"output":"done","password":%q}`, secret), false, "Completed"},
			{"fails", fmt.Sprintf(`{"fail":true,"password":%q}`, secret), false, "Failed"},
			{"dry-run", `{"output":"would do"}`, true, "Completed"},
		}
		for _, c := range cases {
			obj := execution(ns, c.name, "audited-action", c.params)
			obj.Spec.DryRun = c.dryRun
			Expect(k8s.Create(ctx, obj)).To(Succeed())
		}
		for _, c := range cases {
			got := ended(ctx, execution(ns, c.name, "", ""))
			Expect(meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.ConditionAudited)).To(BeTrue(), "%v", got.Status.Conditions)
			events := stored(c.name)
			Expect(events).To(HaveLen(1), c.name)
			ev := events[0]
			Expect(ev.EventID).To(Equal(got.Status.Audit.EventID))
			Expect(ev.EventType).To(Equal("kubernetes.execution"))
			Expect(ev.Phase).To(Equal(c.phase), c.name)
			Expect(ev.DryRun).To(Equal(c.dryRun))
			Expect(ev.ExecutionUID).To(Equal(string(got.UID)))
			Expect(ev.Requester).NotTo(BeNil())
			Expect(ev.Requester.Username).To(Equal(got.Spec.Admission.Requester.Username))
			Expect(ev.Template.Name).To(Equal("audited-action"))
			Expect(ev.Template.Generation).To(Equal(got.Spec.Admission.TemplateGeneration))
			Expect(ev.Attempts).To(HaveLen(1))
			Expect(ev.JobInfo).NotTo(BeNil())
			Expect(ev.JobInfo.Name).To(Equal(got.Status.Attempts[0].JobName))
			Expect(ev.JobInfo.ResourceUsage).NotTo(BeNil(), "the project's action reports its usage")
			Expect(ev.JobInfo.ResourceUsage.CPUSeconds).To(BeNumerically(">", 0))
			Expect(ev.JobInfo.ResourceUsage.PeakMemoryBytes).To(BeNumerically(">", 1<<20))
			if c.params != "" && !c.dryRun {
				Expect(string(ev.Parameters)).To(ContainSubstring(`"password":"<redacted>"`))
			}
		}
	})

	It("sends one event for a timed-out execution and one for an execution the controller refuses, each saying why", func(ctx SpecContext) {
		slow := execution(ns, "too-slow", "audited-action", `{"sleepSeconds":120}`)
		slow.Spec.Timeout = &metav1.Duration{Duration: 3 * time.Second}
		Expect(k8s.Create(ctx, slow)).To(Succeed())

		// Its template changes while its first attempt runs; that attempt fails, and the
		// controller refuses the retry it would otherwise make.
		tpl := ensureTemplate(ctx, "refused-action")
		refused := execution(ns, "refused", "refused-action", `{"fail":true,"sleepSeconds":2}`)
		refused.Spec.MaxRetries = ptr.To[int32](3)
		Expect(k8s.Create(ctx, refused)).To(Succeed())
		Eventually(func() v1alpha1.ExecutionPhase {
			_ = k8s.Get(ctx, client.ObjectKeyFromObject(refused), refused)
			return refused.Status.Phase
		}).Should(Equal(v1alpha1.PhaseRunning))
		tpl.Spec.Description = "Edited while an execution runs."
		Expect(k8s.Update(ctx, tpl)).To(Succeed())

		got := ended(ctx, slow)
		Expect(got.Status.Phase).To(Equal(v1alpha1.PhaseTimedOut))
		events := stored("too-slow")
		Expect(events).To(HaveLen(1))
		Expect(events[0].Phase).To(Equal("TimedOut"))
		Expect(events[0].Reason).To(Equal(v1alpha1.ReasonTimedOut))
		Expect(events[0].Result.Success).To(BeFalse())

		got = ended(ctx, refused)
		Expect(got.Status.Phase).To(Equal(v1alpha1.PhaseFailed))
		events = stored("refused")
		Expect(events).To(HaveLen(1))
		Expect(events[0].Phase).To(Equal("Failed"))
		Expect(events[0].Reason).To(Equal(v1alpha1.ReasonTemplateChanged))
		Expect(events[0].Attempts).To(HaveLen(1), "no retry after the template changed")
		Expect(events[0].Result.Error).To(ContainSubstring("no further attempt may start"))
	})

	It("holds an execution while the storage service is down, deletion included, and delivers it once when it returns", func(ctx SpecContext) {
		Expect(receiver.SetFault(auditreceiver.Fault{Mode: auditreceiver.ModeFail, Status: 503})).To(Succeed())
		obj := execution(ns, "outage", "audited-action", `{"output":"done"}`)
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		got := &v1alpha1.KubernetesExecution{}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(obj), got)).To(Succeed())
			c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionAudited)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonAuditDeliveryFailed))
			g.Expect(c.Message).To(ContainSubstring("503"))
		}).Should(Succeed())
		Expect(got.Status.Phase).To(Equal(v1alpha1.PhaseCompleted))
		Expect(controllerutil.ContainsFinalizer(got, v1alpha1.AuditFinalizer)).To(BeTrue())
		Expect(backlog()).To(BeNumerically(">=", 1))

		// Deleting it waits for the audit.
		Expect(k8s.Delete(ctx, obj)).To(Succeed())
		Consistently(func() error { return k8s.Get(ctx, client.ObjectKeyFromObject(obj), &v1alpha1.KubernetesExecution{}) }, 3*time.Second).Should(Succeed())
		Expect(stored("outage")).To(BeEmpty())

		Expect(receiver.SetFault(auditreceiver.Fault{})).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(obj), &v1alpha1.KubernetesExecution{}))
		}, 2*time.Minute).Should(BeTrue())
		events := stored("outage")
		Expect(events).To(HaveLen(1))
		Expect(events[0].Phase).To(Equal("Completed"))
	})

	It("stores every event exactly once after an outage that lasts the whole run", func(ctx SpecContext) {
		n := 30 // AUDIT_OUTAGE_EXECUTIONS overrides it, e.g. 300 for the full figure
		if v, err := strconv.Atoi(os.Getenv("AUDIT_OUTAGE_EXECUTIONS")); err == nil && v > 0 {
			n = v
		}
		Expect(receiver.SetFault(auditreceiver.Fault{Mode: auditreceiver.ModeFail, Status: 503})).To(Succeed())
		before := receiver.State().Counters.Stored
		for i := range n {
			Expect(k8s.Create(ctx, execution(ns, fmt.Sprintf("burst-%03d", i), "audited-action", `{"output":"done"}`))).To(Succeed())
		}
		// Every execution ends while the storage service is down; none may go.
		Eventually(func(g Gomega) {
			list := &v1alpha1.KubernetesExecutionList{}
			g.Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			g.Expect(list.Items).To(HaveLen(n))
			for _, e := range list.Items {
				g.Expect(e.Status.Phase).To(Equal(v1alpha1.PhaseCompleted), e.Name)
				g.Expect(meta.IsStatusConditionFalse(e.Status.Conditions, v1alpha1.ConditionAudited)).To(BeTrue(), e.Name)
			}
		}, time.Duration(n)*2*time.Second+time.Minute).Should(Succeed())
		Expect(receiver.State().Counters.Stored).To(Equal(before))
		Expect(backlog()).To(BeNumerically(">=", n))

		Expect(receiver.SetFault(auditreceiver.Fault{})).To(Succeed())
		start := time.Now()
		Eventually(func(g Gomega) {
			list := &v1alpha1.KubernetesExecutionList{}
			g.Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			for _, e := range list.Items {
				g.Expect(e.Finalizers).NotTo(ContainElement(v1alpha1.AuditFinalizer), e.Name)
			}
		}, 5*time.Minute).Should(Succeed())
		GinkgoWriter.Printf("%d audit events delivered %s after the storage service came back\n", n, time.Since(start).Round(time.Millisecond))
		Expect(receiver.State().Counters.Stored - before).To(Equal(n))
		for i := range n {
			Expect(stored(fmt.Sprintf("burst-%03d", i))).To(HaveLen(1))
		}
	})

	It("resends an event whose acknowledgement was lost with the same id, and it is stored once", func(ctx SpecContext) {
		// The storage service stores the first post and then fails to answer it.
		Expect(receiver.SetFault(auditreceiver.Fault{Mode: auditreceiver.ModeFail, Status: 503, Stage: auditreceiver.StageAfter, Times: 1})).To(Succeed())
		before := receiver.State().Counters
		obj := execution(ns, "lost-ack", "audited-action", `{"output":"done"}`)
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		got := ended(ctx, obj)
		Expect(meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.ConditionAudited)).To(BeTrue())
		Expect(receiver.State().Counters.Received-before.Received).To(BeNumerically(">=", 2), "the event was sent again")
		Expect(stored("lost-ack")).To(HaveLen(1))
		Expect(receiver.State().Counters.Duplicates - before.Duplicates).To(BeNumerically(">=", 1))
	})

	It("resends, after a manager restart, an event posted just before the restart, and it is stored once", func(ctx SpecContext) {
		// The storage service stores the event, then holds its answer back; the manager stops
		// before it can record the delivery.
		Expect(receiver.SetFault(auditreceiver.Fault{Delay: auditreceiver.Duration(20 * time.Second), Stage: auditreceiver.StageAfter, Times: 1})).To(Succeed())
		obj := execution(ns, "restarted", "audited-action", `{"output":"done"}`)
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(func() []audit.Event { return stored("restarted") }).Should(HaveLen(1))
		Expect(installed.RestartManager(ctx)).To(Succeed())
		got := ended(ctx, obj)
		Expect(meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.ConditionAudited)).To(BeTrue())
		events := stored("restarted")
		Expect(events).To(HaveLen(1), "the resend carried the same event id")
		Expect(events[0].EventID).To(Equal(got.Status.Audit.EventID))
	})

	It("records the template generation admitted, not one edited later", func(ctx SpecContext) {
		tpl := ensureTemplate(ctx, "edited-action")
		obj := execution(ns, "edited", "edited-action", `{"sleepSeconds":3}`)
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		admitted := obj.Spec.Admission.TemplateGeneration
		Eventually(func() v1alpha1.ExecutionPhase {
			_ = k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)
			return obj.Status.Phase
		}).Should(Equal(v1alpha1.PhaseRunning))
		tpl.Spec.Description = "Edited while an execution runs."
		Expect(k8s.Update(ctx, tpl)).To(Succeed())
		Expect(tpl.Generation).To(BeNumerically(">", admitted))

		got := ended(ctx, obj)
		Expect(got.Status.Phase).To(Equal(v1alpha1.PhaseCompleted), "the running attempt's outcome is kept")
		events := stored("edited")
		Expect(events).To(HaveLen(1))
		Expect(events[0].Template.Generation).To(Equal(admitted))
	})
})
