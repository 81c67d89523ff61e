#!/usr/bin/env bash
# make demo: starts the local control plane, installs the operator with its Helm chart (the
# manager runs from the chart's Deployment, the webhook is reached through its Service), shows a
# bad execution rejected, scales a Deployment, runs a retried execution to Completed and shows it
# all with kubectl. Each execution's audit event goes to a test storage service
# (test/cmd/auditreceiver, started on the pod network's host address), and the demo lists what it
# stored. With KEEP=1 everything keeps running and KUBECONFIG=<path> and AUDIT_URL=<url> are
# printed; `make demo-down` stops it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$root/bin}
state=$root/.work/demo
kubeconfig=$state/cluster/kubeconfig
ns=kubernaut-demo

# shellcheck source=test/demo-lib.sh
source "$root/test/demo-lib.sh"

down() {
  stop_pid "$state/cluster.pid"
  stop_pid "$state/audit.pid"
}

if [ "${1:-}" = "--down" ]; then
  down
  echo "demo stopped"
  exit 0
fi

down
mkdir -p "$state"
rm -f "$state/cluster/ready"

say "Starting the local control plane (etcd, kube-apiserver, kube-controller-manager, node agent, pod network)"
setsid nohup "$BIN/localcluster" --dir "$state/cluster" --bin-dir "$BIN" --pod-network >"$state/cluster.log" 2>&1 &
echo $! >"$state/cluster.pid"
for _ in $(seq 300); do
  [ -f "$state/cluster/ready" ] && break
  if ! kill -0 "$(cat "$state/cluster.pid")" 2>/dev/null; then
    cat "$state/cluster.log"; echo "the control plane did not start" >&2; exit 1
  fi
  sleep 0.5
done
[ -f "$state/cluster/ready" ] || { cat "$state/cluster.log"; echo "the control plane did not start in time" >&2; exit 1; }
export KUBECONFIG=$kubeconfig
trap '[ -n "${KEEP:-}" ] || down' EXIT
kubectl get nodes

say "Starting the audit storage service (test/cmd/auditreceiver) on the pod network's host address"
# The manager runs in the pod network's namespace; the host side's address, where the API server
# listens too, is the one it reaches the host at.
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
host=${server#https://}
host=${host%:*}
rm -rf "$state/audit"
setsid nohup "$BIN/auditreceiver" -listen "$host:0" -data "$state/audit/events.jsonl" >"$state/audit.out" 2>"$state/audit.log" &
echo $! >"$state/audit.pid"
audit_url=
for _ in $(seq 100); do
  audit_url=$(sed -n 's/^AUDIT_URL=//p' "$state/audit.out")
  [ -n "$audit_url" ] && break
  kill -0 "$(cat "$state/audit.pid")" 2>/dev/null || break
  sleep 0.1
done
[ -n "$audit_url" ] || { cat "$state/audit.log"; echo "the audit receiver did not start" >&2; exit 1; }
echo "AUDIT_URL=$audit_url"

say "helm install kubernaut-executor (CRDs, the manager's Deployment, its RBAC and the ceiling, the webhook and its Service, every predefined action; audit.url=$audit_url)"
"$HELM" install kubernaut-executor "$root/charts/kubernaut-executor" -n kubernaut-system --create-namespace \
  --set manager.image.tag=dev --set executor.actionImage.tag=dev --set executor.retryBackoff=3s \
  --set audit.url="$audit_url" \
  --wait --timeout 3m 2>&1 | grep -v 'found symbolic link'
kubectl -n kubernaut-system get deployment,pods,services -o wide
# The manager creates each enabled action's template (every one in templates/) from its ConfigMap.
shipped=$(ls "$root"/templates/*.yaml | wc -l)
for _ in $(seq 120); do
  [ "$(kubectl get actiontemplates -o name 2>/dev/null | wc -l)" -ge "$shipped" ] && break
  sleep 0.5
done
kubectl wait --for=condition=Ready actiontemplate --all --timeout=60s >/dev/null

say "Installing the demo's test action (checked by the ActionTemplate webhook, through its Service)"
kubectl apply -f "$root/test/demo/test-action.yaml"
kubectl wait --for=condition=Ready actiontemplate/test-action --timeout=60s >/dev/null
kubectl get actiontemplates
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
# The namespace enforces the restricted Pod Security Standard: the action's pods must pass it.
kubectl label namespace "$ns" pod-security.kubernetes.io/enforce=restricted --overwrite
kubectl apply -f "$root/test/demo/web.yaml"
kubectl -n "$ns" rollout status deployment/web --timeout=60s

say "A bad execution is rejected at kubectl apply, every bad field named, and never runs"
if kubectl apply -f "$root/test/demo/bad-execution.yaml"; then
  echo "the bad execution was admitted" >&2; exit 1
fi

say "Scaling deployment web from 1 to 3 replicas with scale-deployment"
kubectl apply -f "$root/test/demo/scale.yaml"
say "Two executions of the test action: one succeeds at once, one fails twice and succeeds on its third attempt"
kubectl apply -f "$root/test/demo/executions.yaml"

say "An execution that asks for approval waits, with no Job and no grant, until someone other than its requester approves it"
kubectl apply -f "$root/test/demo/approval.yaml"
kubectl -n "$ns" wait --for=jsonpath='{.status.phase}'=AwaitingApproval kexec/demo-approved --timeout=60s >/dev/null
kubectl -n "$ns" get kexec demo-approved
say "Its requester (you, local-admin) may not approve it: four eyes"
if "$BIN/kubectl-kubernaut" -n "$ns" approve demo-approved --reason "my own change"; then
  echo "the requester approved their own execution" >&2; exit 1
fi
say "sre-lead, who may approve executions, approves it with the kubectl plugin (kubectl kubernaut approve)"
"$BIN/kubectl-kubernaut" -n "$ns" --as sre-lead approve demo-approved --reason "checked with the web team"

ok=true
for name in demo-scale-web demo-succeeds demo-retries demo-approved; do
  if ! kubectl -n "$ns" wait --for=jsonpath='{.status.phase}'=Completed "kexec/$name" --timeout=120s >/dev/null; then
    ok=false
    echo "execution $name did not complete:" >&2
    kubectl -n "$ns" get kexec "$name" -o yaml >&2 || true
    kubectl -n kubernaut-system logs deployment/kubernaut-executor --tail=30 >&2 || true
  fi
done
# Each execution keeps the finalizer kubernaut.io/audit until the storage service acknowledges
# its audit event; then Audited turns True.
if ! kubectl -n "$ns" wait --for=condition=Audited kexec --all --timeout=60s >/dev/null; then
  ok=false
  echo "the audit events were not all acknowledged:" >&2
  kubectl -n "$ns" get kexec -o yaml >&2 || true
  tail -n 20 "$state/audit.log" >&2 || true
fi

say "kubectl get kexec -n $ns -o wide (AUDITED: the storage service acknowledged the audit event)"
kubectl -n "$ns" get kexec -o wide
say "kubectl get deployment web: 3 replicas now"
kubectl -n "$ns" get deployment web
say "Result of demo-scale-web (before and after in data)"
kubectl -n "$ns" get kexec demo-scale-web -o jsonpath='{.status.result}{"\n"}'
say "The Jobs, one per attempt"
kubectl -n "$ns" get jobs -L kubernaut.io/execution,kubernaut.io/attempt
say "Result of demo-retries"
kubectl -n "$ns" get kexec demo-retries -o jsonpath='{.status.result}{"\n"}'
kubectl -n "$ns" get kexec demo-retries -o jsonpath='{range .status.attempts[*]}attempt {.number}: {.jobName} exit {.exitCode} {.reason}{"\n"}{end}'

say "The approved execution's result and who approved it (kubectl kubernaut result demo-approved)"
"$BIN/kubectl-kubernaut" -n "$ns" result demo-approved

say "Audit delivery in each execution's status; the finalizer kubernaut.io/audit is gone once delivered"
kubectl -n "$ns" get kexec -o custom-columns='NAME:.metadata.name,EVENT ID:.status.audit.eventId,TRIES:.status.audit.attempts,DELIVERED:.status.audit.deliveredTime,FINALIZERS:.metadata.finalizers'
say "The audit records the storage service stored ($BIN/auditreceiver -list $audit_url)"
records=$("$BIN/auditreceiver" -list "$audit_url")
echo "$records"
if [ "$(grep -c "^$ns " <<<"$records")" != 4 ]; then
  ok=false
  echo "the storage service holds $(grep -c "^$ns " <<<"$records") audit records of namespace $ns, want 4 (one per execution)" >&2
fi

$ok || { echo "the demo failed" >&2; exit 1; }

if [ -n "${KEEP:-}" ]; then
  say "The control plane and the operator keep running. Explore with kubectl:"
  echo "KUBECONFIG=$kubeconfig"
  echo "  export KUBECONFIG=$kubeconfig; kubectl get kexec -A -o wide"
  echo "The audit storage service keeps running too:"
  echo "AUDIT_URL=$audit_url"
  echo "  $BIN/auditreceiver -list $audit_url; curl -s $audit_url/api/v1/audit/kubernetes-execution"
  echo "Run an action image of your own (docs/authoring.md, step 7):"
  echo "  $BIN/localcluster load-image IMAGE BINARY"
  echo "  stop everything with: make demo-down"
else
  say "Demo complete; stopping everything (KEEP=1 keeps it running)"
fi
