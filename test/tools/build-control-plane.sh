#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) from the Go
# module proxy at pinned versions into a cache folder outside the clone, keyed by version, and
# prints that folder. Binaries already present are reused, so only the first run pays the build.
#
#   KUBERNAUT_CACHE_DIR  cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/kubernaut-executor)
#   K8S_VERSION, ETCD_VERSION  pinned versions (defaults below)
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
cache_root=${KUBERNAUT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kubernaut-executor}
out="$cache_root/controlplane-k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}"
mkdir -p "$out"
log() { echo "build-control-plane: $*" >&2; }

# Wrapper modules live outside the project's go.mod: etcd and k8s.io/kubernetes carry replace
# directives, so `go install` refuses them.
work="$cache_root/src"
mkdir -p "$work"

build_etcd() {
  [ -x "$out/etcd" ] && return
  log "building etcd $ETCD_VERSION (about 1-2 minutes cold)"
  local dir="$work/etcd-$ETCD_VERSION"
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  cat > go.mod <<MOD
module kubernaut.local/etcdbuild

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
  GOFLAGS=-mod=mod go mod tidy
  CGO_ENABLED=0 go build -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$out/etcd.tmp" "$out/etcd"
}

build_kube() {
  local want=()
  for b in kube-apiserver kube-controller-manager kube-scheduler; do [ -x "$out/$b" ] || want+=("$b"); done
  [ ${#want[@]} -eq 0 ] && return
  log "building ${want[*]} $K8S_VERSION (about 8-10 minutes cold, 1 minute warm)"
  local dir="$work/kubernetes-$K8S_VERSION"
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" > dl.json
  local gomod
  gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' dl.json)
  local staging_ver="v0.${K8S_VERSION#v1.}"
  {
    echo "module kubernaut.local/kubebuild"
    echo
    grep -E '^(go|godebug) ' "$gomod"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    # Every staging module that k8s.io/kubernetes requires at v0.0.0 is served at v0.<minor>.<patch>.
    awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print "replace " $1 " => " $1 " '"$staging_ver"'"}' "$gomod" | sort -u
  } > go.mod
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for b in kube-apiserver kube-controller-manager kube-scheduler; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$b"; done
    printf ')\n'
  } > tools.go
  GOFLAGS=-mod=mod go mod tidy
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local ld=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  for b in "${want[@]}"; do
    CGO_ENABLED=0 go build -ldflags "-s -w $ld" -o "$out/$b.tmp" "k8s.io/kubernetes/cmd/$b"
    mv "$out/$b.tmp" "$out/$b"
  done
}

(build_etcd)
(build_kube)
echo "$out"
