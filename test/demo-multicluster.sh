#!/usr/bin/env bash
# make demo-multicluster: one hub acting on two target clusters. It starts three local control
# planes (hub, east, west; each with its node agent and pod network), installs the operator on
# the hub with its Helm chart, gives each target the executor's least-privilege identity
# (config/target) and registers it on the hub with a Secret, then scales a Deployment on each
# target from the hub and shows the grants there gone once the executions ended. With KEEP=1
# everything keeps running and each cluster's KUBECONFIG is printed; `make demo-multicluster-down`
# stops it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$root/bin}
state=$root/.work/demo-multicluster
ns=kubernaut-demo
clusters="hub east west"

# shellcheck source=test/demo-lib.sh
source "$root/test/demo-lib.sh"

down() {
  for c in $clusters; do stop_pid "$state/$c.pid"; done
}

if [ "${1:-}" = "--down" ]; then
  down
  echo "multi-cluster demo stopped"
  exit 0
fi

down
mkdir -p "$state"

say "Starting three local control planes: the hub, east and west"
for c in $clusters; do
  rm -f "$state/$c/ready"
  setsid nohup "$BIN/localcluster" --dir "$state/$c" --bin-dir "$BIN" --pod-network >"$state/$c.log" 2>&1 &
  echo $! >"$state/$c.pid"
done
trap '[ -n "${KEEP:-}" ] || down' EXIT
for c in $clusters; do
  for _ in $(seq 400); do
    [ -f "$state/$c/ready" ] && break
    if ! kill -0 "$(cat "$state/$c.pid")" 2>/dev/null; then
      cat "$state/$c.log"; echo "the $c control plane did not start" >&2; exit 1
    fi
    sleep 0.5
  done
  [ -f "$state/$c/ready" ] || { cat "$state/$c.log"; echo "the $c control plane did not start in time" >&2; exit 1; }
done
hub() { kubectl --kubeconfig "$state/hub/kubeconfig" "$@"; }
on() { local c=$1; shift; kubectl --kubeconfig "$state/$c/kubeconfig" "$@"; }

say "helm install kubernaut-executor on the hub"
KUBECONFIG=$state/hub/kubeconfig "$HELM" install kubernaut-executor "$root/charts/kubernaut-executor" -n kubernaut-system --create-namespace \
  --set manager.image.tag=dev --set executor.actionImage.tag=dev \
  --wait --timeout 3m 2>&1 | grep -v 'found symbolic link'
for _ in $(seq 240); do
  hub get actiontemplate scale-deployment >/dev/null 2>&1 && break
  sleep 0.5
done
hub wait --for=condition=Ready actiontemplate/scale-deployment --timeout=120s >/dev/null
hub create namespace "$ns"

for c in east west; do
  say "Preparing $c: the executor's identity there (config/target: the ceiling and what Jobs and grants need, no cluster-admin), and the Deployment web"
  on "$c" apply -f "$root/config/rbac/namespace.yaml" -f "$root/config/rbac/ceiling.yaml" \
    -f "$root/config/rbac/ceiling-predefined.yaml" -f "$root/config/target/target.yaml"
  on "$c" create namespace "$ns"
  on "$c" label namespace "$ns" pod-security.kubernetes.io/enforce=restricted
  on "$c" apply -f "$root/test/demo/web.yaml"
  token=
  for _ in $(seq 100); do
    token=$(on "$c" -n kubernaut-system get secret kubernaut-executor-hub-token -o jsonpath='{.data.token}' 2>/dev/null || true)
    [ -n "$token" ] && break
    sleep 0.2
  done
  [ -n "$token" ] || { echo "no token for the hub in $c" >&2; exit 1; }
  on "$c" -n kubernaut-system get secret kubernaut-executor-hub-token -o jsonpath='{.data.ca\.crt}' | base64 -d >"$state/$c-ca.crt"
  server=$(on "$c" config view --minify -o jsonpath='{.clusters[0].cluster.server}')

  say "Registering $c on the hub: a Secret labelled kubernaut.io/cluster=true ($server)"
  hub -n kubernaut-system create secret generic "cluster-$c" --from-literal=server="$server" \
    --from-file=ca.crt="$state/$c-ca.crt" --from-literal=token="$(base64 -d <<<"$token")"
  hub -n kubernaut-system annotate secret "cluster-$c" kubernaut.io/cluster-name="$c"
  hub -n kubernaut-system label secret "cluster-$c" kubernaut.io/cluster=true
done

say "The hub connects to both, without a restart (kubectl kubernaut clusters)"
for _ in $(seq 120); do
  [ "$(KUBECONFIG=$state/hub/kubeconfig "$BIN/kubectl-kubernaut" clusters | grep -c ' Ready ')" = 2 ] && break
  sleep 0.5
done
KUBECONFIG=$state/hub/kubeconfig "$BIN/kubectl-kubernaut" clusters

say "An execution naming a cluster nobody registered is rejected at kubectl apply"
if sed 's/cluster: east/cluster: north/; /^---$/,$d' "$root/test/demo-multicluster/scale.yaml" | hub apply -f -; then
  echo "an execution for an unregistered cluster was admitted" >&2; exit 1
fi

say "Scaling web to 2 replicas on east and to 3 on west, from the hub"
hub apply -f "$root/test/demo-multicluster/scale.yaml"
ok=true
for c in east west; do
  if ! hub -n "$ns" wait --for=jsonpath='{.status.phase}'=Completed "kexec/scale-web-$c" --timeout=120s >/dev/null; then
    ok=false
    hub -n "$ns" get kexec "scale-web-$c" -o yaml
  fi
done
hub -n "$ns" get kexec -o wide
for c in east west; do
  echo "--- $c"
  on "$c" -n "$ns" get deployment web
  on "$c" -n "$ns" get jobs
  grants=$(on "$c" get serviceaccounts,roles,rolebindings -A -l kubernaut.io/execution-uid -o name | wc -l)
  echo "grants left in $c: $grants"
  [ "$grants" = 0 ] || ok=false
done
[ "$(on east -n "$ns" get deployment web -o jsonpath='{.spec.replicas}')" = 2 ] || ok=false
[ "$(on west -n "$ns" get deployment web -o jsonpath='{.spec.replicas}')" = 3 ] || ok=false
echo "--- the hub runs no Job of its own for them:"
hub -n "$ns" get jobs
$ok || { echo "the multi-cluster demo failed" >&2; exit 1; }

if [ -n "${KEEP:-}" ]; then
  say "The three control planes and the operator keep running:"
  for c in $clusters; do echo "  $c: KUBECONFIG=$state/$c/kubeconfig"; done
  echo "  stop everything with: make demo-multicluster-down"
else
  say "Multi-cluster demo complete; stopping everything (KEEP=1 keeps it running)"
fi
