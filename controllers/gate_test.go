package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
)

// The gate before an execution's first attempt: one at a time per target, concurrency caps,
// rate limits and approval (controllers/kubernetesexecution_gate.go). Each spec asserts what
// waited, why, and that nothing of a waiting or refused execution (no Job, no grant) exists.
var _ = Describe("The gate before the first attempt", func() {
	var ns string
	BeforeEach(func(ctx SpecContext) {
		ensureTemplate(ctx, testTemplate, "kubernaut-actions")
		ns = newNamespace(ctx)
	})

	// gated is the test action's template with the gate's settings applied by with.
	gated := func(ctx context.Context, name string, with func(*v1alpha1.ActionTemplateSpec)) *v1alpha1.ActionTemplate {
		tpl := testActionTemplate(name, "kubernaut-actions")
		with(&tpl.Spec)
		return createTemplate(ctx, tpl)
	}
	on := func(name, action, target, params string) *v1alpha1.KubernetesExecution {
		obj := newExecution(ns, name, params)
		obj.Spec.Action.Type = action
		obj.Spec.Action.Target.ResourceName = target
		return obj
	}
	readyOf := func(ctx context.Context, obj *v1alpha1.KubernetesExecution) func() string {
		return func() string {
			got := &v1alpha1.KubernetesExecution{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), got); err != nil {
				return err.Error()
			}
			c := readyCondition(got)
			return string(got.Status.Phase) + " " + c.Reason + ": " + c.Message
		}
	}
	nothingOf := func(ctx context.Context, obj *v1alpha1.KubernetesExecution) {
		GinkgoHelper()
		jobs := &batchv1.JobList{}
		Expect(k8s.List(ctx, jobs, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelExecution: obj.Name})).To(Succeed())
		Expect(jobs.Items).To(BeEmpty(), "no Job for %s", obj.Name)
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: controllers.ExecutionServiceAccountName(obj.Name)}, &corev1.ServiceAccount{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no grant for %s: %v", obj.Name, err)
	}

	It("runs two executions on one target one after the other, the second waiting as TargetBusy", func(ctx SpecContext) {
		first := newExecution(ns, "first", `{"sleepSeconds":4}`)
		Expect(k8s.Create(ctx, first)).To(Succeed())
		Eventually(phaseOf(ctx, first)).Should(Equal(v1alpha1.PhaseRunning))
		second := newExecution(ns, "second", `{}`)
		Expect(k8s.Create(ctx, second)).To(Succeed())

		Eventually(readyOf(ctx, second)).Should(Equal(fmt.Sprintf(
			"Pending TargetBusy: Waiting for execution %s/first (%s), which runs on the same target", ns, testTemplate)))
		nothingOf(ctx, second)
		Eventually(phaseOf(ctx, first), 30*time.Second).Should(Equal(v1alpha1.PhaseCompleted))
		Eventually(phaseOf(ctx, second), 30*time.Second).Should(Equal(v1alpha1.PhaseCompleted))
		a, b := get(ctx, first)(Default), get(ctx, second)(Default)
		Expect(b.Status.StartTime.Time).NotTo(BeTemporally("<", a.Status.CompletionTime.Time), "the second started after the first ended")
	})

	It("lets a read-only action run beside a mutating one on the same target", func(ctx SpecContext) {
		gated(ctx, "read-only", func(s *v1alpha1.ActionTemplateSpec) { s.Mutating = ptr.To(false) })
		writer := newExecution(ns, "writer", `{"sleepSeconds":6}`)
		Expect(k8s.Create(ctx, writer)).To(Succeed())
		Eventually(phaseOf(ctx, writer)).Should(Equal(v1alpha1.PhaseRunning))
		reader := on("reader", "read-only", "web", `{}`)
		Expect(k8s.Create(ctx, reader)).To(Succeed())
		Eventually(phaseOf(ctx, reader), 30*time.Second).Should(Equal(v1alpha1.PhaseCompleted))
		Expect(phaseOf(ctx, writer)()).To(Equal(v1alpha1.PhaseRunning), "the reader did not wait for the writer")
	})

	It("holds an action's concurrency cap of 1 with three executions, in creation order, across a manager restart", func(ctx SpecContext) {
		gated(ctx, "capped", func(s *v1alpha1.ActionTemplateSpec) { s.Concurrency = &v1alpha1.ConcurrencyLimit{Max: 1} })
		var execs []*v1alpha1.KubernetesExecution
		for i, target := range []string{"web", "db", "cache"} {
			if target != "web" {
				Expect(k8s.Create(ctx, deployment(ns, target))).To(Succeed())
			}
			obj := on(fmt.Sprintf("capped-%d", i), "capped", target, `{"sleepSeconds":3}`)
			Expect(k8s.Create(ctx, obj)).To(Succeed())
			execs = append(execs, obj)
			time.Sleep(1100 * time.Millisecond) // creation times have whole seconds
		}
		Eventually(readyOf(ctx, execs[2])).Should(HavePrefix("Pending QueueFull: Waiting for a slot of action capped: 1 of its executions run and 1 wait ahead of this one (spec.concurrency.max 1)"))
		nothingOf(ctx, execs[2])

		// The manager goes and comes back while two wait: the order and the cap hold.
		stopMgr()
		<-mgrDone
		startManager()

		// One List: a snapshot of the three at one resourceVersion. Three Gets would read them at
		// three moments, and could see the first still running and the next already started.
		running := func(g Gomega) int {
			list := &v1alpha1.KubernetesExecutionList{}
			g.Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			n := 0
			for _, e := range list.Items {
				if strings.HasPrefix(e.Name, "capped-") && e.Status.Phase == v1alpha1.PhaseRunning {
					n++
				}
			}
			return n
		}
		Consistently(running, 8*time.Second, 200*time.Millisecond).Should(BeNumerically("<=", 1))
		for _, e := range execs {
			Eventually(phaseOf(ctx, e), time.Minute).Should(Equal(v1alpha1.PhaseCompleted))
		}
		for i := 1; i < len(execs); i++ {
			prev, cur := get(ctx, execs[i-1])(Default), get(ctx, execs[i])(Default)
			Expect(cur.Status.StartTime.Time).NotTo(BeTemporally("<", prev.Status.CompletionTime.Time), "%s started before %s ended", cur.Name, prev.Name)
		}
	})

	It("delays the third execution under a rate limit of 2 per minute", func(ctx SpecContext) {
		gated(ctx, "rated", func(s *v1alpha1.ActionTemplateSpec) {
			s.RateLimit = &v1alpha1.RateLimit{Max: 2, Per: metav1.Duration{Duration: time.Minute}}
		})
		var execs []*v1alpha1.KubernetesExecution
		for i, target := range []string{"web", "db", "cache"} {
			if target != "web" {
				Expect(k8s.Create(ctx, deployment(ns, target))).To(Succeed())
			}
			obj := on(fmt.Sprintf("rated-%d", i), "rated", target, `{}`)
			Expect(k8s.Create(ctx, obj)).To(Succeed())
			execs = append(execs, obj)
			Eventually(func() string { return string(phaseOf(ctx, obj)()) }).ShouldNot(BeEmpty())
		}
		Eventually(phaseOf(ctx, execs[0])).Should(Equal(v1alpha1.PhaseCompleted))
		Eventually(phaseOf(ctx, execs[1])).Should(Equal(v1alpha1.PhaseCompleted))
		Eventually(readyOf(ctx, execs[2])).Should(HavePrefix("Pending RateLimited: Waiting for the rate limit of action rated (2 per 1m0s): 2 started in the last 1m0s"))
		Consistently(phaseOf(ctx, execs[2]), 3*time.Second).Should(Equal(v1alpha1.PhasePending))
		nothingOf(ctx, execs[2])

		testClock.Step(61 * time.Second)
		poke(ctx, execs[2])
		Eventually(phaseOf(ctx, execs[2]), 30*time.Second).Should(Equal(v1alpha1.PhaseCompleted))
	})

	It("fails a waiting execution with the reason it waited for once its queue timeout passes", func(ctx SpecContext) {
		first := newExecution(ns, "holder", `{"sleepSeconds":600}`)
		Expect(k8s.Create(ctx, first)).To(Succeed())
		Eventually(phaseOf(ctx, first)).Should(Equal(v1alpha1.PhaseRunning))
		second := newExecution(ns, "impatient", `{}`)
		second.Spec.QueueTimeout = &metav1.Duration{Duration: time.Minute}
		Expect(k8s.Create(ctx, second)).To(Succeed())
		Eventually(phaseOf(ctx, second)).Should(Equal(v1alpha1.PhasePending))

		testClock.Step(61 * time.Second)
		poke(ctx, second)
		Eventually(readyOf(ctx, second)).Should(Equal(fmt.Sprintf(
			"Failed TargetBusy: no attempt started within the queue timeout (1m0s): Waiting for execution %s/holder (%s), which runs on the same target", ns, testTemplate)))
		nothingOf(ctx, second)
		Expect(k8s.Delete(ctx, first)).To(Succeed())
	})

	Describe("approval", func() {
		// decide records a decision as the executor's webhook does when an approver sets the
		// Approved condition (the approver's write path is tested with the webhooks).
		decide := func(ctx context.Context, obj *v1alpha1.KubernetesExecution, decision v1alpha1.ApprovalDecision, reason string) {
			GinkgoHelper()
			asManager, err := client.New(managerConfig, client.Options{Scheme: scheme})
			Expect(err).NotTo(HaveOccurred())
			cur := get(ctx, obj)(Default)
			orig := cur.DeepCopy()
			cur.Status.Approval = &v1alpha1.ApprovalRecord{
				Decision: decision, Reason: reason, Time: metav1.NewTime(testClock.Now()),
				Approver: v1alpha1.UserInfo{Username: "alice", Groups: []string{"sre"}},
			}
			Expect(asManager.Status().Patch(ctx, cur, client.MergeFrom(orig))).To(Succeed())
		}
		BeforeEach(func(ctx SpecContext) {
			gated(ctx, "guarded", func(s *v1alpha1.ActionTemplateSpec) { s.Approval = v1alpha1.ApprovalPolicyRequired })
		})
		awaiting := func(ctx context.Context, name string) *v1alpha1.KubernetesExecution {
			GinkgoHelper()
			obj := on(name, "guarded", "web", `{}`)
			obj.Spec.Timeout = &metav1.Duration{Duration: 2 * time.Minute}
			Expect(k8s.Create(ctx, obj)).To(Succeed())
			Eventually(readyOf(ctx, obj)).Should(HavePrefix("AwaitingApproval AwaitingApproval: Waiting for approval"))
			got := get(ctx, obj)(Default)
			approved := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionApproved)
			Expect(approved).NotTo(BeNil())
			Expect(approved.Status).To(Equal(metav1.ConditionUnknown))
			Consistently(func() []batchv1.Job { return jobsOf(ctx, ns) }, 2*time.Second).Should(BeEmpty())
			nothingOf(ctx, obj)
			return obj
		}

		It("waits with no Job and no grant until approved, then runs", func(ctx SpecContext) {
			obj := awaiting(ctx, "approved")
			decide(ctx, obj, v1alpha1.DecisionApproved, "checked the dashboards")
			Eventually(phaseOf(ctx, obj), 30*time.Second).Should(Equal(v1alpha1.PhaseCompleted))
			Expect(get(ctx, obj)(Default).Status.Approval.Approver.Username).To(Equal("alice"))
		})

		It("fails as Denied, with the approver's reason, and never runs", func(ctx SpecContext) {
			obj := awaiting(ctx, "denied")
			decide(ctx, obj, v1alpha1.DecisionDenied, "not during the freeze")
			Eventually(readyOf(ctx, obj)).Should(MatchRegexp(`^Failed Denied: denied by alice at \S+: not during the freeze$`))
			got := get(ctx, obj)(Default)
			Expect(meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionApproved).Status).To(Equal(metav1.ConditionFalse))
			Expect(got.Status.Attempts).To(BeEmpty())
			nothingOf(ctx, obj)
		})

		It("fails as ApprovalTimedOut when nobody decides within the timeout, and never runs", func(ctx SpecContext) {
			obj := awaiting(ctx, "unattended")
			testClock.Step(2*time.Minute + time.Second)
			poke(ctx, obj)
			Eventually(readyOf(ctx, obj)).Should(Equal("Failed ApprovalTimedOut: nobody approved or denied the execution within its timeout (2m0s); it never ran"))
			Expect(get(ctx, obj)(Default).Status.Attempts).To(BeEmpty())
			nothingOf(ctx, obj)
		})
	})
})

// The upstream WorkflowExecution controller's reading of an execution (the integration
// document): a zero timeout is the default, the result exists once the first attempt has
// started, and retryCount counts the entries into Retrying.
var _ = Describe("The upstream controller's contract", func() {
	var ns string
	BeforeEach(func(ctx SpecContext) {
		ensureTemplate(ctx, testTemplate, "kubernaut-actions")
		ns = newNamespace(ctx)
	})

	It("runs timeout: 0s with the template's default timeout, and shows the result's start time while the first attempt runs", func(ctx SpecContext) {
		obj := newExecution(ns, "zero-timeout", `{"sleepSeconds":3}`)
		obj.Spec.Timeout = &metav1.Duration{}
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseRunning))
		got := get(ctx, obj)(Default)
		Expect(got.Status.Result).NotTo(BeNil(), "status.result exists once the first attempt started")
		Expect(got.Status.Result.StartTime).NotTo(BeNil())
		jobs := jobsOf(ctx, ns)
		Expect(jobs).To(HaveLen(1))
		// The template's default (5m), less the moment between the start and the Job.
		Expect(*jobs[0].Spec.ActiveDeadlineSeconds).To(BeNumerically("~", 300, 5))
		Eventually(phaseOf(ctx, obj), 30*time.Second).Should(Equal(v1alpha1.PhaseCompleted))
	})

	It("counts retryCount up when the execution enters Retrying", func(ctx SpecContext) {
		obj := newExecution(ns, "counted", `{"failUntilAttempt":2}`)
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		Eventually(phaseOf(ctx, obj)).Should(Equal(v1alpha1.PhaseRetrying))
		Expect(get(ctx, obj)(Default).Status.RetryCount).To(BeEquivalentTo(1))
		stepToRetry(ctx, obj)
		Eventually(phaseOf(ctx, obj), 30*time.Second).Should(Equal(v1alpha1.PhaseCompleted))
		Expect(get(ctx, obj)(Default).Status.RetryCount).To(BeEquivalentTo(1))
	})
})
