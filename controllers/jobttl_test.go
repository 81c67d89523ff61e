package controllers_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// A finished Job is deleted by the Job controller once its TTL has passed, and its pod, which
// holds the attempt's result, with it. Were the TTL set when the Job is created, a manager down
// for longer than the TTL would find the Job gone and the outcome lost.
var _ = Describe("A finished attempt's Job", func() {
	It("gets its TTL only once the attempt's outcome is recorded, even when it finished while no manager ran", func(ctx SpecContext) {
		ensureTemplate(ctx, testTemplate, "kubernaut-actions")
		ns := newNamespace(ctx)
		obj := newExecution(ns, "kept", `{"sleepSeconds":2,"output":"the outcome"}`)
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		job := &batchv1.Job{}
		key := client.ObjectKey{Namespace: ns, Name: "kept-1"}
		Eventually(func() error { return k8s.Get(ctx, key, job) }).Should(Succeed())
		Expect(job.Spec.TTLSecondsAfterFinished).To(BeNil(), "a running attempt's Job has no TTL")

		stopManager()
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, key, job)).To(Succeed())
			g.Expect(job.Status.Succeeded).To(BeEquivalentTo(1))
		}).Should(Succeed())
		Consistently(func(g Gomega) {
			g.Expect(k8s.Get(ctx, key, job)).To(Succeed())
			g.Expect(job.Spec.TTLSecondsAfterFinished).To(BeNil(), "nothing may delete the Job before its outcome is read")
		}, "2s").Should(Succeed())

		startManager()
		Eventually(func(g Gomega) {
			got := get(ctx, obj)(g)
			g.Expect(got.Status.Phase).To(Equal(v1alpha1.PhaseCompleted))
			g.Expect(got.Status.Result).NotTo(BeNil())
			g.Expect(got.Status.Result.Output).To(Equal("the outcome"))
			g.Expect(k8s.Get(ctx, key, job)).To(Succeed())
			g.Expect(job.Spec.TTLSecondsAfterFinished).To(HaveValue(BeEquivalentTo(3600)), "the suite's --job-ttl, 1h")
		}).Should(Succeed())
	})
})
