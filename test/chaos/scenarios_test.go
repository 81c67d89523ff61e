package chaos_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
	"github.com/kubernaut/kubernaut-executor/controllers"
	"github.com/kubernaut/kubernaut-executor/test/auditreceiver"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
)

// The scenarios are numbered as in docs/reliability.md. Each is one spec with a manager of its
// own; they share the control plane and the storage service, and run in any order.
var _ = Describe("Faults", func() {
	It("1: the manager SIGKILLed at random moments, and restarted each time", func(ctx SpecContext) {
		n, kills := pick(60, 300), pick(5, 20)
		// The manager runs for 1 to maxUp seconds between kills and is down for up to 2 seconds
		// (plus its start); the executions are created at 3 a second meanwhile, so that kills
		// land in every step of an execution: admission, first reconcile, grant, Job creation,
		// status write, retry backoff, timeout, audit delivery, revocation.
		maxUp := pick(5*time.Second, 8*time.Second)
		r := newRun(ctx, 1, "manager SIGKILLed at random moments", fmt.Sprintf("%d executions, %d kills (up 1-%s, down 0-2s each time)", n, kills, maxUp))
		items := workload("k", r.namespaces, n, r.rng)
		c := &creator{}
		createCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		wait := c.atRate(createCtx, items, 3)
		for i := 1; i <= kills; i++ {
			sleep(ctx, uniform(r.rng, time.Second, maxUp))
			r.kill(ctx, fmt.Sprintf("kill %d of %d", i, kills))
			sleep(ctx, uniform(r.rng, 0, 2*time.Second))
			r.startManager(ctx)
		}
		r.faultEnd = time.Now()
		r.event(ctx, "last restart done")
		wait()
		r.admit(c)
		r.row.Notes["creates_refused_while_down"] = c.refused.Load()
		r.waitDone(ctx, pick(3*time.Minute, 10*time.Minute))
		r.finish(ctx)
	}, SpecTimeout(pick(8*time.Minute, 30*time.Minute)))

	It("3: kube-apiserver restarted mid-run, then etcd restarted with its data kept", func(ctx SpecContext) {
		n := pick(40, 300)
		down := pick(3*time.Second, 10*time.Second)
		r := newRun(ctx, 3, "kube-apiserver and etcd restarted", fmt.Sprintf("%d executions; the API server down %s, then etcd down %s", n, down, down))
		items := workload("a", r.namespaces, n, r.rng)
		c := &creator{}
		createCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		wait := c.atRate(createCtx, items, 3)
		sleep(ctx, uniform(r.rng, pick(3*time.Second, 5*time.Second), pick(6*time.Second, 30*time.Second)))
		r.event(ctx, "stopping kube-apiserver")
		start := time.Now()
		Expect(restartControlPlane(ctx, "kube-apiserver", down, filepath.Join(r.dir, "kube-apiserver.log"))).To(Succeed())
		r.event(ctx, "kube-apiserver ready again after %.1fs", time.Since(start).Seconds())
		sleep(ctx, uniform(r.rng, pick(3*time.Second, 5*time.Second), pick(6*time.Second, 30*time.Second)))
		r.event(ctx, "stopping etcd")
		start = time.Now()
		Expect(restartControlPlane(ctx, "etcd", down, filepath.Join(r.dir, "etcd.log"))).To(Succeed())
		r.faultEnd = time.Now()
		r.event(ctx, "etcd and the API server ready again after %.1fs", time.Since(start).Seconds())
		wait()
		r.admit(c)
		r.row.Notes["creates_refused_while_down"] = c.refused.Load()
		r.waitDone(ctx, pick(3*time.Minute, 10*time.Minute))
		r.finish(ctx)
	}, SpecTimeout(pick(8*time.Minute, 30*time.Minute)))

	It("4: the storage service down while executions finish, then back", func(ctx SpecContext) {
		// The full version creates its executions as the outage starts, so that their events
		// wait the whole 10 minutes and the deliveries' backoff reaches its 5-minute cap. The
		// short one creates them 35 seconds in, so that they end within the outage's last 25
		// seconds (the ones that time out take 10) and are delivered within make test's time
		// budget: an event whose deliveries failed for a minute would wait up to a minute more
		// once the service is back.
		n, outage, delay := pick(40, 300), pick(time.Minute, 10*time.Minute), pick(35*time.Second, 0)
		r := newRun(ctx, 4, "storage service down (503)", fmt.Sprintf("%d executions, the storage service answering 503 for %s (created %s in)", n, outage, delay))
		before := s.receiver.State().Counters
		Expect(s.receiver.SetFault(auditreceiver.Fault{Mode: auditreceiver.ModeFail, Status: 503})).To(Succeed())
		DeferCleanup(func() { Expect(s.receiver.SetFault(auditreceiver.Fault{})).To(Succeed()) })
		outageEnd := time.Now().Add(outage)
		r.event(ctx, "the storage service answers 503")
		sleep(ctx, delay)
		c := &creator{}
		c.all(ctx, workload("s", r.namespaces, n, r.rng), 4)
		r.admit(c)

		// Every execution ends while the service is down, each keeping its event (and its audit
		// finalizer) until the service is back.
		for time.Now().Before(outageEnd) && ctx.Err() == nil {
			execs, err := executions(ctx, r.namespaces)
			Expect(err).NotTo(HaveOccurred())
			ended := 0
			for _, e := range execs {
				if e.Status.Phase.IsTerminal() {
					ended++
				}
			}
			if ended == len(r.admitted) {
				break
			}
			sleep(ctx, time.Second)
		}
		r.event(ctx, "every execution has ended, or the outage is over")
		execs, err := executions(ctx, r.namespaces)
		Expect(err).NotTo(HaveOccurred())
		ended := 0
		for key, e := range execs {
			if !e.Status.Phase.IsTerminal() {
				continue
			}
			ended++
			if !contains(e.Finalizers, v1alpha1.AuditFinalizer) {
				r.problem("%s: ended during the outage and let go of its audit finalizer before its event was stored", key)
			}
		}
		r.row.Notes["ended_during_outage"] = ended
		stored, err := storedEvents(r.nsSet)
		Expect(err).NotTo(HaveOccurred())
		for key := range stored {
			r.problem("%s: an event was stored while the storage service answered 503", key)
		}
		sleep(ctx, time.Until(outageEnd))
		refused := s.receiver.State().Counters.Failed - before.Failed
		r.row.Notes["deliveries_refused_503"] = refused
		Expect(refused).To(BeNumerically(">", 0), "the storage service refused nothing: no fault was injected")
		Expect(s.receiver.SetFault(auditreceiver.Fault{})).To(Succeed())
		r.faultEnd = time.Now()
		r.event(ctx, "the storage service answers again (%d deliveries refused with 503)", refused)
		// Deliveries back off up to 5 minutes (internal/audit), so recovery takes up to that.
		r.waitDone(ctx, pick(3*time.Minute, 8*time.Minute))
		r.finish(ctx)
	}, SpecTimeout(pick(8*time.Minute, 30*time.Minute)))

	It("5: the webhook unreachable: creates fail closed, and admission works again when it returns", func(ctx SpecContext) {
		n, outage, tries := pick(20, 100), pick(10*time.Second, time.Minute), pick(5, 20)
		r := newRun(ctx, 5, "webhook unreachable (manager stopped)", fmt.Sprintf("%d executions, half created before the manager stops; %d creates tried during %s without it", n, tries, outage))
		items := workload("w", r.namespaces, n, r.rng)
		first, later := items[:n/2], items[n/2:]
		c := &creator{}
		c.all(ctx, first, 4)
		r.waitJobs(ctx, 1) // attempts are in flight when the webhook goes
		r.stop(ctx, "the webhook goes")

		outageStart := time.Now()
		outageEnd := outageStart.Add(outage)
		refused := 0
		for i := range tries {
			p := later[i%len(later)]
			err := s.k8s.Create(ctx, p.object())
			switch {
			case err == nil:
				r.problem("%s was admitted while the webhook was unreachable", p.key())
			case !strings.Contains(err.Error(), "failed calling webhook"):
				r.problem("%s was refused with an unclear error: %v", p.key(), err)
			default:
				refused++
				if i == 0 {
					r.row.Notes["refusal"] = err.Error()
				}
			}
			sleep(ctx, outage/time.Duration(tries+1))
		}
		// What a user sees.
		out, err := e2eutil.Kubectl(s.cluster.Kubeconfig, e2eutil.ExecutionManifest(later[0].ns, later[0].name, templateName,
			"{outcome: ok}", later[0].ns, "ConfigMap", targetName), "create", "-f", "-")
		if err == nil {
			r.problem("kubectl create was admitted while the webhook was unreachable: %s", out)
		}
		r.row.Notes["kubectl"] = strings.TrimSpace(out)
		r.row.Notes["creates_refused"] = refused
		// None admitted: none stored, and the API server completed no create of one.
		for _, p := range later {
			err := s.k8s.Get(ctx, client.ObjectKey{Namespace: p.ns, Name: p.name}, &v1alpha1.KubernetesExecution{})
			if !apierrors.IsNotFound(err) {
				r.problem("%s exists after a create refused while the webhook was unreachable (%v)", p.key(), err)
			}
		}
		reqs, err := apiRequests(r.nsSet)
		Expect(err).NotTo(HaveOccurred())
		for _, q := range reqs {
			if q.verb == "create" && q.resource == "kubernetesexecutions" && q.code == 201 && q.at.After(outageStart) {
				r.problem("the API server admitted %s/%s while the webhook was unreachable", q.namespace, q.name)
			}
		}
		sleep(ctx, time.Until(outageEnd))

		restart := time.Now()
		r.startManager(ctx)
		r.faultEnd = time.Now()
		r.event(ctx, "the manager serves again")
		c.create(ctx, later[0])
		r.row.Notes["admission_back_seconds"] = time.Since(restart).Seconds()
		r.event(ctx, "admission works again")
		c.all(ctx, later[1:], 4)
		r.admit(c)
		r.waitDone(ctx, pick(3*time.Minute, 10*time.Minute))
		r.finish(ctx)
	}, SpecTimeout(pick(6*time.Minute, 20*time.Minute)))

	It("7: the manager down longer than the Job TTL: no finished attempt's outcome lost", func(ctx SpecContext) {
		ttl := pick(5*time.Second, 10*time.Second)
		n := pick(20, 100)
		r := newRun(ctx, 7, "manager down 3x the Job TTL", fmt.Sprintf("%d executions, --job-ttl=%s, the manager stopped while attempts run, until they have finished and 3x the TTL has passed", n, ttl),
			fmt.Sprintf("--job-ttl=%s", ttl))
		c := &creator{}
		c.all(ctx, workload("t", r.namespaces, n, r.rng), 4)
		r.admit(c)
		r.waitJobs(ctx, n/2)
		r.stop(ctx, "stop while attempts run")
		down := time.Now()
		// The attempts whose outcome the manager recorded before it stopped: their Jobs may go.
		recorded := map[string]bool{}
		execs, err := executions(ctx, r.namespaces)
		Expect(err).NotTo(HaveOccurred())
		for _, e := range execs {
			for _, a := range e.Status.Attempts {
				if a.EndTime != nil {
					recorded[e.Namespace+"/"+a.JobName] = true
				}
			}
		}
		// The attempts in flight finish with no manager to read them (an action that never ends
		// at its Job's active deadline), then their Jobs' TTL passes three times over.
		jobs := r.waitJobsFinished(ctx, 2*time.Minute)
		r.event(ctx, "all %d Jobs have finished; waiting 3x the Job TTL", jobs)
		sleep(ctx, 3*ttl)
		// What the Job TTL did meanwhile: the Jobs deleted while no manager ran, and among them
		// those whose outcome was not recorded, which are lost unless something kept them.
		reqs, err := apiRequests(r.nsSet)
		Expect(err).NotTo(HaveOccurred())
		deleted, unrecorded := 0, 0
		for _, q := range reqs {
			if q.verb == "delete" && q.resource == "jobs" && q.code >= 200 && q.code < 300 && q.at.After(down) {
				deleted++
				if !recorded[q.namespace+"/"+q.name] {
					unrecorded++
				}
			}
		}
		r.row.Notes["jobs_deleted_while_down"] = deleted
		r.row.Notes["unrecorded_jobs_deleted_while_down"] = unrecorded
		r.startManager(ctx)
		r.faultEnd = time.Now()
		r.event(ctx, "the manager serves again (%d Jobs were deleted while it was down, %d of them with their outcome unrecorded)", deleted, unrecorded)
		r.waitDone(ctx, pick(3*time.Minute, 10*time.Minute))
		r.finish(ctx)
	}, SpecTimeout(pick(6*time.Minute, 20*time.Minute)))
})

// The action's pod taken away while it runs: evicted, or deleted.
var _ = Describe("Faults", func() {
	It("6: the action's pod evicted or deleted mid-run: retried when idempotent, failed with the disruption when not", func(ctx SpecContext) {
		n := pick(20, 150)
		r := newRun(ctx, 6, "action pods evicted or deleted", fmt.Sprintf("%d executions of a 10-second action: a fifth left alone, the others' first pod evicted or deleted while it runs (idempotent or not)", n))
		items := workloadOf("d", r.namespaces, n, r.rng, func(i int) *kind { return disrupted[i%len(disrupted)] })
		c := &creator{}
		c.all(ctx, items, 4)
		r.admit(c)
		r.event(ctx, "all created")

		// Each first pod is taken away once it runs: at once, or a few seconds in.
		var wg sync.WaitGroup
		var evicted, deleted atomic.Int64
		for _, p := range r.admitted {
			if p.kind.lose == "" {
				continue
			}
			delay := uniform(r.rng, 0, 5*time.Second)
			wg.Go(func() {
				pod, err := runningPod(ctx, p, "1", time.Minute)
				if err != nil {
					r.problem("%s: %v", p.key(), err)
					return
				}
				sleep(ctx, delay)
				switch p.kind.lose {
				case "evict":
					err = s.k8s.SubResource("eviction").Create(ctx, pod, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name}})
					evicted.Add(1)
				case "delete":
					err = s.k8s.Delete(ctx, pod)
					deleted.Add(1)
				}
				if err != nil {
					r.problem("%s: could not %s its pod %s: %v", p.key(), p.kind.lose, pod.Name, err)
				}
			})
		}
		wg.Wait()
		r.faultEnd = time.Now()
		r.row.Notes["pods_evicted"], r.row.Notes["pods_deleted"] = evicted.Load(), deleted.Load()
		r.event(ctx, "%d pods evicted, %d deleted", evicted.Load(), deleted.Load())
		r.waitDone(ctx, pick(2*time.Minute, 5*time.Minute))

		// An action that is not idempotent ran in one pod only: its Job counts one failed pod, and
		// no other ever ran or runs.
		for _, p := range r.admitted {
			if p.kind.template != onceTemplateName {
				continue
			}
			job := &batchv1.Job{}
			if err := s.k8s.Get(ctx, client.ObjectKey{Namespace: p.ns, Name: controllers.JobName(p.name, 1)}, job); err != nil {
				r.problem("%s: its Job: %v", p.key(), err)
				continue
			}
			if st := job.Status; st.Failed != 1 || st.Succeeded != 0 || ptr.Deref(st.Terminating, 0) != 0 || st.Active != 0 {
				r.problem("%s: not idempotent, yet its Job counts %d failed, %d succeeded, %d active pods", p.key(), st.Failed, st.Succeeded, st.Active)
			}
		}
		r.finish(ctx)
	}, SpecTimeout(pick(5*time.Minute, 12*time.Minute)))
})

// Targets and namespaces deleted under running executions.
var _ = Describe("Faults", func() {
	It("8: the target deleted mid-run, and a namespace deleted with executions in it", func(ctx SpecContext) {
		n, m := pick(40, 200), pick(15, 60)
		r := newRun(ctx, 8, "targets and namespaces deleted", fmt.Sprintf("%d executions, the target of a third of them deleted while they run; "+
			"a namespace deleted with %d executions in it, their targets in another namespace", n, m))
		items := workload("g", r.namespaces, n, r.rng)
		orphaned := r.namespaces[0]
		c := &creator{}
		createCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		wait := c.atRate(createCtx, items, 4)

		// The target deleted while its executions run, retry and wait to start: an attempt
		// running then ends as its action does; none starts after it.
		sleep(ctx, uniform(r.rng, 3*time.Second, pick(6*time.Second, 20*time.Second)))
		r.must(s.k8s.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: orphaned, Name: targetName}}))
		targetGone := time.Now()
		r.event(ctx, "the target of the executions in %s deleted", orphaned)

		// A namespace deleted with executions in it, running, retrying and waiting: each is
		// cancelled, its grant (a Role in the target's namespace) revoked and its audit event
		// stored, and nothing holds the namespace.
		doomed := "chaos-8-doomed"
		r.must(createNamespace(ctx, doomed))
		doomedItems := workloadOf("x", []string{doomed}, m, r.rng, func(i int) *kind { return kinds[mix[i%len(mix)]] })
		for _, p := range doomedItems {
			p.targetNS = r.namespaces[1]
		}
		dc := &creator{}
		dc.all(ctx, doomedItems, 4)
		doomedAdmitted, errs := dc.result()
		for _, err := range errs {
			r.problem("%v", err)
		}
		r.waitJobsIn(ctx, doomed, m/3)
		r.must(s.k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: doomed}}))
		deleting := time.Now()
		r.event(ctx, "namespace %s deleted with %d executions in it", doomed, len(doomedAdmitted))
		gone := false
		for time.Since(deleting) < 2*time.Minute && ctx.Err() == nil {
			err := s.k8s.Get(ctx, client.ObjectKey{Name: doomed}, &corev1.Namespace{})
			if gone = apierrors.IsNotFound(err); gone {
				break
			}
			sleep(ctx, 500*time.Millisecond)
		}
		if gone {
			r.row.Notes["namespace_deletion_seconds"] = time.Since(deleting).Seconds()
			r.event(ctx, "namespace %s gone after %.1fs", doomed, time.Since(deleting).Seconds())
		} else {
			left, _ := executions(ctx, []string{doomed})
			r.problem("namespace %s still there 2 minutes after its deletion; %d executions left in it", doomed, len(left))
			for key, e := range left {
				r.problem("%s: holds the namespace with finalizers %v (phase %q)", key, e.Finalizers, e.Status.Phase)
			}
		}
		r.checkDoomed(ctx, doomed, doomedAdmitted)

		wait()
		r.admit(c)
		r.faultEnd = time.Now()
		// An execution whose target was deleted ends as its kind implies, or, when an attempt
		// came due after the deletion, as TargetNotFound after the attempts its kind implies so far.
		targetNotFound := 0
		r.accept = func(p *planned, e *v1alpha1.KubernetesExecution) bool {
			ready := meta.FindStatusCondition(e.Status.Conditions, v1alpha1.ConditionReady)
			if ready == nil {
				return false
			}
			// "does not exist" before a first attempt, "no longer exists" before a later one.
			saysGone := strings.HasSuffix(ready.Message, "no longer exists") || strings.HasSuffix(ready.Message, "does not exist")
			if p.ns != orphaned || e.Status.Phase != v1alpha1.PhaseFailed || ready.Reason != v1alpha1.ReasonTargetNotFound || !saysGone || len(e.Status.Attempts) >= len(p.kind.reasons) ||
				e.Status.CompletionTime == nil || e.Status.CompletionTime.Time.Before(targetGone.Truncate(time.Second)) {
				return false
			}
			for i, a := range e.Status.Attempts {
				if !contains(p.kind.reasons[i], a.Reason) {
					return false
				}
			}
			targetNotFound++
			r.row.Notes["ended_target_not_found"] = targetNotFound
			return true
		}
		r.waitDone(ctx, pick(3*time.Minute, 10*time.Minute))
		r.finish(ctx)
	}, SpecTimeout(pick(6*time.Minute, 20*time.Minute)))
})

// waitJobsIn waits until at least n Jobs exist in namespace ns.
func (r *run) waitJobsIn(ctx context.Context, ns string, n int) {
	Eventually(func(g Gomega) {
		jobs := &batchv1.JobList{}
		g.Expect(s.k8s.List(ctx, jobs, client.InNamespace(ns))).To(Succeed())
		g.Expect(len(jobs.Items)).To(BeNumerically(">=", n))
	}).WithContext(ctx).WithTimeout(2 * time.Minute).Should(Succeed())
}

// checkDoomed checks what the executions of a deleted namespace left: each one's audit event
// stored exactly once (cancelled, or the end it reached first), a Job created at most once per
// attempt and none past the attempts its event records, and no grant left, in the namespace or
// in the target's. They are not among r.admitted: their namespace is gone, so the other checks
// would find them lost.
func (r *run) checkDoomed(ctx context.Context, ns string, admitted []*planned) {
	set := map[string]bool{ns: true}
	r.row.Notes["namespace_executions"] = len(admitted)
	events, err := storedEvents(set)
	r.must(err)
	reqs, err := apiRequests(set)
	r.must(err)
	creates := jobCreations(reqs, nil)
	cancelled := 0
	for _, p := range admitted {
		evs := events[p.key()]
		delete(events, p.key())
		switch {
		case len(evs) == 0:
			r.row.AuditMissing++
			r.problem("%s: deleted with its namespace, and no audit event stored", p.key())
			continue
		case len(evs) > 1:
			r.row.AuditDuplicatesStored += len(evs) - 1
			r.problem("%s: %d audit events stored", p.key(), len(evs))
		}
		if evs[0].Phase == "Cancelled" {
			cancelled++
		}
		recorded := map[string]bool{}
		for _, a := range evs[0].Attempts {
			recorded[p.ns+"/"+a.Job] = true
		}
		for k := 1; k <= int(v1alpha1.MaxRetriesCap)+1; k++ {
			job := p.ns + "/" + controllers.JobName(p.name, int32(k)) //nolint:gosec // at most 11
			n := creates[job]
			delete(creates, job)
			switch {
			case n > 1:
				r.row.DuplicateAttempts += n - 1
				r.problem("%s: Job %s created %d times", p.key(), job, n)
			case n == 1 && !recorded[job]:
				r.row.DuplicateAttempts++
				r.problem("%s: Job %s created for an attempt its audit event does not record", p.key(), job)
			}
		}
	}
	r.row.Notes["namespace_executions_cancelled"] = cancelled
	for key, n := range creates {
		r.row.DuplicateAttempts += n
		r.problem("Job %s created %d times, for no execution admitted", key, n)
	}
	for key, evs := range events {
		r.row.AuditDuplicatesStored += len(evs)
		r.problem("%s: %d audit events stored for an execution not admitted", key, len(evs))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		left, err := grantObjects(ctx, set)
		r.must(err)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			// Counted with the scenario's other grants left (checkDeletion).
			for key, uid := range left {
				r.grantsLeft[uid] = key + " (its execution deleted with its namespace)"
			}
			return
		}
		sleep(ctx, time.Second)
	}
}

// runningPod waits until the pod of attempt of p runs, and returns it.
func runningPod(ctx context.Context, p *planned, attempt string, timeout time.Duration) (*corev1.Pod, error) {
	deadline := time.Now().Add(timeout)
	for {
		pods := &corev1.PodList{}
		err := s.k8s.List(ctx, pods, client.InNamespace(p.ns), client.MatchingLabels{
			v1alpha1.LabelExecution: controllers.LabelValue(p.name), v1alpha1.LabelAttempt: attempt,
		})
		if err == nil {
			for i := range pods.Items {
				if pod := &pods.Items[i]; pod.Status.Phase == corev1.PodRunning && pod.DeletionTimestamp == nil {
					return pod, nil
				}
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("the pod of attempt %s did not run within %s (%v)", attempt, timeout, err)
		}
		sleep(ctx, 200*time.Millisecond)
	}
}

// admit records the executions the creator got admitted; one never admitted is a problem.
func (r *run) admit(c *creator) {
	admitted, errs := c.result()
	r.admitted = admitted
	for _, err := range errs {
		r.problem("%v", err)
	}
}
