package chaos_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubernaut/kubernaut-executor/internal/manager"
	"github.com/kubernaut/kubernaut-executor/test/e2eutil"
	"github.com/kubernaut/kubernaut-executor/test/managerproc"
)

// The manager's leader election runs with controller-runtime's defaults (pkg/manager): the
// lease lasts 15 seconds, and a replica tries to acquire or renew it every 2 seconds. client-go
// spaces a standby's tries by the retry period times 1 to 1+JitterFactor (1.2), so up to 4.4
// seconds apart.
const (
	leaseDuration = 15 * time.Second
	retryPeriod   = 2 * time.Second
	retryJitter   = 1.2
)

var (
	// maxRetryInterval is the longest wait between two of a standby's tries.
	maxRetryInterval = time.Duration(float64(retryPeriod) * (1 + retryJitter))
	// maxKillTakeover bounds a takeover after the leader is SIGKILLed. The standby takes the
	// lease once it has seen the lease unchanged for the lease duration, counted from the try at
	// which it saw the leader's last renewal (up to one interval after it), and it notices at
	// its next try (up to one interval more): the lease duration plus two of the longest
	// intervals, and a second for the requests themselves on a loaded machine.
	maxKillTakeover = leaseDuration + 2*maxRetryInterval + time.Second
	// maxReleaseTakeover bounds a takeover after the leader released the lease (it exits on
	// SIGTERM once its controllers have stopped): the standby takes a released lease at its next
	// try.
	maxReleaseTakeover = maxRetryInterval + time.Second
)

// What the manager logs (controller-runtime and client-go's leader election) when it acquires
// the lease, and when a controller starts reconciling, which it must do only once it holds the
// lease.
const (
	acquiredLog = "Successfully acquired lease"
	workersLog  = `"Starting workers"`
)

var _ = Describe("Faults", func() {
	It("2: two replicas with leader election: the leader SIGKILLed, the other takes over", func(ctx SpecContext) {
		// The executions are created at 1 a second (full: 2) while the leader goes, 3 to 8
		// seconds (full: 3 to 15) into each reign. A SIGKILL, as a crash or a lost node would,
		// leaves its lease to expire: the attempts it had in flight, and the executions created
		// meanwhile (both replicas admit them), wait for the new leader, which must neither lose
		// nor repeat any. One SIGTERM, as a rollout would, must hand the lease over at once.
		n, kills, rate := pick(60, 200), pick(2, 3), pick(1.0, 2.0)
		handovers := kills + 1
		r := newRunWithoutManager(ctx, 2, "two replicas with leader election, the leader SIGKILLed",
			fmt.Sprintf("%d executions, two replicas; %d handovers: the leader SIGKILLed %d times and stopped (SIGTERM) once, started again as the standby each time", n, handovers, kills),
			"--leader-elect", "--leader-election-namespace="+e2eutil.Namespace)

		// Each replica serves the webhooks on a port of its own, behind a forwarder where the
		// cluster's webhook configurations point, as a Service in front of two pods.
		reps := [2]*replica{r.newReplica("a"), r.newReplica("b")}
		fw, err := e2eutil.StartForwarder(net.JoinHostPort(s.cluster.Webhook.Host, strconv.Itoa(s.cluster.Webhook.Port)),
			[]string{reps[0].addr(), reps[1].addr()})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(fw.Close)
		DeferCleanup(func() {
			for _, rep := range reps {
				if rep.p != nil {
					_ = rep.p.Kill()
				}
			}
		})

		// The first replica takes the lease; the second waits as the standby.
		before, err := readLease(ctx)
		Expect(err).NotTo(HaveOccurred())
		leader, standby := reps[0], reps[1]
		leader.start(ctx, r)
		holder, _, ok := waitHolder(ctx, before.holder, time.Minute)
		Expect(ok).To(BeTrue(), "replica %s did not acquire the lease within a minute (see %s)", leader.name, leader.p.LogPath)
		r.checkAcquired(leader, holder)
		r.m = leader.p
		r.event(ctx, "replica %s (pid %d) holds the lease as %s", leader.name, leader.p.Pid(), holder)
		standby.start(ctx, r)
		r.event(ctx, "replica %s (pid %d) started as the standby", standby.name, standby.p.Pid())
		probe := &planned{ns: r.namespaces[0], name: "probe", kind: kinds[0]}
		Eventually(func() error {
			return s.k8s.Create(ctx, probe.object(), client.DryRunAll)
		}).WithContext(ctx).Should(Succeed(), "no execution is admitted through the forwarder")

		items := workload("l", r.namespaces, n, r.rng)
		c := &creator{}
		createCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		wait := c.atRate(createCtx, items, rate)

		// One of the handovers, at a place the seed chooses, is a graceful one.
		graceful := r.rng.IntN(handovers)
		var killTakeovers []float64
		for i := range handovers {
			sleep(ctx, uniform(r.rng, 3*time.Second, pick(8*time.Second, 15*time.Second)))
			r.checkStandby(standby)
			if got, err := readLease(ctx); err != nil {
				r.problem("reading the lease before handover %d: %v", i+1, err)
			} else if got.holder != holder {
				r.problem("before handover %d the lease is held by %q, not by replica %s (%s): it changed hands with no fault", i+1, got.holder, leader.name, holder)
			}
			if exited, err := leader.p.Exited(); exited {
				r.problem("replica %s (pid %d), the leader, had exited by itself before handover %d: %v", leader.name, leader.p.Pid(), i+1, err)
			}

			var stopped time.Time
			pid := leader.p.Pid()
			start := time.Now()
			if i == graceful {
				if err := leader.p.Stop(); err != nil {
					r.problem("replica %s (pid %d) did not stop cleanly on SIGTERM: %v", leader.name, pid, err)
				}
				stopped = time.Now()
				r.event(ctx, "handover %d of %d: leader %s (pid %d) stopped (SIGTERM) after %.1fs", i+1, handovers, leader.name, pid, stopped.Sub(start).Seconds())
				// The lease is released by the time the process has exited: empty, or already the
				// standby's.
				if got, err := readLease(ctx); err == nil && got.holder == holder {
					r.problem("replica %s exited on SIGTERM still holding the lease: it was not released", leader.name)
				}
			} else {
				Expect(leader.p.Kill()).To(Succeed())
				r.event(ctx, "handover %d of %d: leader %s (pid %d) SIGKILLed", i+1, handovers, leader.name, pid)
			}
			newHolder, took, ok := waitHolder(ctx, holder, maxKillTakeover+10*time.Second)
			if !ok {
				r.problem("handover %d: replica %s did not take the lease within %s of the leader's end", i+1, standby.name, maxKillTakeover+10*time.Second)
				r.row.Notes["takeovers_seconds"] = killTakeovers
				Fail(fmt.Sprintf("no takeover (see %s)", standby.p.LogPath))
			}
			seconds := took.Sub(start).Seconds()
			if i == graceful {
				r.row.Notes["graceful_takeover_seconds"] = round1(seconds)
				r.row.Notes["graceful_stop_seconds"] = round1(stopped.Sub(start).Seconds())
				if after := took.Sub(stopped); after > maxReleaseTakeover || took.Sub(start) >= leaseDuration {
					r.problem("handover %d (SIGTERM): replica %s took the lease %.1fs after the leader was stopped, %.1fs after it exited: not at its next try after the release (%s)",
						i+1, standby.name, seconds, after.Seconds(), maxReleaseTakeover)
				}
			} else {
				killTakeovers = append(killTakeovers, round1(seconds))
				if took.Sub(start) > maxKillTakeover {
					r.problem("handover %d (SIGKILL): replica %s took the lease %.1fs after the leader's end, more than the lease duration and two retry intervals allow (%s)",
						i+1, standby.name, seconds, maxKillTakeover)
				}
			}
			r.checkAcquired(standby, newHolder)
			r.event(ctx, "replica %s (pid %d) took the lease after %.1fs", standby.name, standby.p.Pid(), seconds)
			r.m, holder = standby.p, newHolder
			r.faultEnd = took

			// The replica that went comes back, as its pod would, as the new standby.
			sleep(ctx, uniform(r.rng, 0, 2*time.Second))
			leader.start(ctx, r)
			r.event(ctx, "replica %s (pid %d) started again as the standby", leader.name, leader.p.Pid())
			leader, standby = standby, leader
		}
		r.row.Notes["takeovers_seconds"] = killTakeovers
		r.row.Notes["takeover_bound_seconds"] = maxKillTakeover.Seconds()
		wait()
		r.admit(c)
		// Both replicas serve the webhooks: a create fails only when it is in flight on a
		// connection to a replica as it goes.
		r.row.Notes["creates_refused"] = c.refused.Load()
		r.row.Notes["webhook_connections_refused"] = fw.Refused.Load()
		r.waitDone(ctx, pick(3*time.Minute, 10*time.Minute))

		// The lease changed hands once per handover, and never otherwise.
		if after, err := readLease(ctx); err != nil {
			r.problem("reading the lease: %v", err)
		} else {
			r.row.Notes["lease_transitions"] = after.transitions - before.transitions
			if after.transitions-before.transitions != int32(handovers) { //nolint:gosec // a handful
				r.problem("the lease changed hands %d times, for %d handovers", after.transitions-before.transitions, handovers)
			}
		}
		// The standby goes first, so that finish stops the leader, which must still be serving
		// while the executions are deleted.
		r.checkStandby(standby)
		if err := standby.p.Stop(); err != nil {
			r.problem("replica %s (pid %d), the standby, did not stop cleanly on SIGTERM: %v", standby.name, standby.p.Pid(), err)
		}
		r.finish(ctx)
	}, SpecTimeout(pick(6*time.Minute, 20*time.Minute)))
})

// replica is one of scenario 2's two managers: a folder of its own for its log (across its
// restarts) and a webhook port of its own, which it keeps when it starts again, as a pod would.
type replica struct {
	name string
	dir  string
	port int
	p    *managerproc.Process
	// logStart is the size of the log when p started: what follows is p's.
	logStart int64
}

// newReplica returns replica name of the run, not started, with a free port for its webhooks.
func (r *run) newReplica(name string) *replica {
	addr, err := managerproc.FreeAddr()
	Expect(err).NotTo(HaveOccurred())
	_, port, err := net.SplitHostPort(addr)
	Expect(err).NotTo(HaveOccurred())
	rep := &replica{name: name, dir: filepath.Join(r.dir, "replica-"+name)}
	rep.port, err = strconv.Atoi(port)
	Expect(err).NotTo(HaveOccurred())
	return rep
}

// addr is where the replica serves its webhooks.
func (rep *replica) addr() string {
	return net.JoinHostPort(s.cluster.Webhook.Host, strconv.Itoa(rep.port))
}

// start starts the replica's manager with the run's flags and the replica's webhook port (a
// flag given later wins over the one managerproc sets).
func (rep *replica) start(ctx context.Context, r *run) {
	rep.logStart = 0
	if info, err := os.Stat(filepath.Join(rep.dir, "manager.log")); err == nil {
		rep.logStart = info.Size()
	}
	args := append(slices.Clone(r.args), fmt.Sprintf("--webhook-port=%d", rep.port))
	var err error
	rep.p, err = managerproc.Start(ctx, s.cluster, managerproc.Options{Dir: rep.dir, Args: args})
	Expect(err).NotTo(HaveOccurred())
	r.logf("replica %s running (pid %d, webhooks on port %d, log %s)", rep.name, rep.p.Pid(), rep.port, rep.p.LogPath)
}

// logSince returns what the replica's manager has logged since it last started.
func (rep *replica) logSince() string {
	b, err := os.ReadFile(rep.p.LogPath)
	if err != nil || int64(len(b)) < rep.logStart {
		return ""
	}
	return string(b[rep.logStart:])
}

// checkStandby records a problem when the standby has exited, or has, since it started,
// acquired the lease or started a controller's workers: a standby serves the webhooks and keeps
// its caches warm, and reconciles nothing.
func (r *run) checkStandby(rep *replica) {
	if exited, err := rep.p.Exited(); exited {
		r.problem("replica %s (pid %d), the standby, exited by itself: %v (see %s)", rep.name, rep.p.Pid(), err, rep.p.LogPath)
	}
	log := rep.logSince()
	if strings.Contains(log, acquiredLog) {
		r.problem("replica %s (pid %d) acquired the lease while the other replica held it", rep.name, rep.p.Pid())
	}
	if strings.Contains(log, workersLog) {
		r.problem("replica %s (pid %d) started controllers' workers as the standby", rep.name, rep.p.Pid())
	}
}

// checkAcquired records a problem unless the replica's own log says, within 10 seconds, that it
// acquired the lease (the lease's holder is then this replica, not a process thought gone), and
// that it started no controller's workers before.
func (r *run) checkAcquired(rep *replica, holder string) {
	for deadline := time.Now().Add(10 * time.Second); ; {
		log := rep.logSince()
		if i := strings.Index(log, acquiredLog); i >= 0 {
			if w := strings.Index(log, workersLog); w >= 0 && w < i {
				r.problem("replica %s (pid %d) started controllers' workers before it acquired the lease", rep.name, rep.p.Pid())
			}
			return
		}
		if time.Now().After(deadline) {
			r.problem("the lease is held by %s, but replica %s (pid %d) never logged that it acquired it", holder, rep.name, rep.p.Pid())
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// leaseState is what the checks read of the manager's Lease.
type leaseState struct {
	holder      string
	transitions int32
}

// readLease reads the manager's leader election Lease; the zero state when there is none yet.
func readLease(ctx context.Context) (leaseState, error) {
	l := &coordinationv1.Lease{}
	err := s.k8s.Get(ctx, client.ObjectKey{Namespace: e2eutil.Namespace, Name: manager.LeaderElectionID}, l)
	if apierrors.IsNotFound(err) {
		return leaseState{}, nil
	}
	if err != nil {
		return leaseState{}, err
	}
	var st leaseState
	if l.Spec.HolderIdentity != nil {
		st.holder = *l.Spec.HolderIdentity
	}
	if l.Spec.LeaseTransitions != nil {
		st.transitions = *l.Spec.LeaseTransitions
	}
	return st, nil
}

// waitHolder polls the Lease every 100 ms until a holder other than old holds it, and returns
// that holder and when it was first seen; ok is false when none did within timeout.
func waitHolder(ctx context.Context, old string, timeout time.Duration) (holder string, at time.Time, ok bool) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline) && ctx.Err() == nil; {
		if st, err := readLease(ctx); err == nil && st.holder != "" && st.holder != old {
			return st.holder, time.Now(), true
		}
		sleep(ctx, 100*time.Millisecond)
	}
	return "", time.Time{}, false
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }
