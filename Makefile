# kubernaut-executor
#
# Tools are pinned and installed into ./bin; the local control plane's binaries are built once
# into a cache outside the clone (KUBERNAUT_CACHE_DIR, default ~/.cache/kubernaut-executor).

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

BIN ?= $(CURDIR)/bin
export GOBIN := $(BIN)

CONTROLLER_GEN_VERSION ?= v0.23.0
GINKGO_VERSION ?= v2.34.0
HELM_VERSION ?= v3.22.0
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
GINKGO := $(BIN)/ginkgo-$(GINKGO_VERSION)
HELM := $(BIN)/helm-$(HELM_VERSION)
# kwok simulates pods for the suites at scale. Not in tools/go.mod: it needs k8s.io/api v0.36,
# which no longer has the autoscaling/v2beta* types kube-score v1.20.0 still uses.
KWOK_VERSION ?= v0.8.0
KWOK := $(BIN)/kwok-$(KWOK_VERSION)
# chart-testing is pinned in tools/go.mod.
CT := $(BIN)/ct
# golangci-lint is pinned in tools/go.mod (kept out of the main go.mod); .golangci.yml configures it.
GOLANGCI_LINT := $(BIN)/golangci-lint

# Helm keeps its state inside the ignored work folder, never in the user's home.
export HELM_CACHE_HOME := $(CURDIR)/.work/helm/cache
export HELM_CONFIG_HOME := $(CURDIR)/.work/helm/config
export HELM_DATA_HOME := $(CURDIR)/.work/helm/data

# The release the binaries and images are stamped with, and the images' names.
VERSION ?= dev
MANAGER_IMAGE ?= ghcr.io/kubernaut/kubernaut-executor:$(VERSION)
ACTIONS_IMAGE ?= ghcr.io/kubernaut/kubernaut-actions:$(VERSION)

# KEEP=1 leaves the demo's control plane and manager running.
KEEP ?=
# Test flags: GINKGO_ARGS for the suites (for example --focus=timeout).
GINKGO_ARGS ?=

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRDs, the manager's RBAC, the webhook configuration, and the predefined actions' fragments and ConfigMaps (rendered from the chart) into config/.
	$(CONTROLLER_GEN) crd paths="./api/..." output:crd:artifacts:config=config/crd
	$(CONTROLLER_GEN) rbac:roleName=kubernaut-executor-manager paths="./controllers/...;./webhooks/..." output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) webhook paths="./webhooks/..." output:webhook:artifacts:config=config/webhook
	go run ./test/tools/fragments -chart charts/kubernaut-executor -fragments config/rbac/ceiling-predefined.yaml -configmaps config/predefined/actions.yaml

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Lint the Go code with golangci-lint (.golangci.yml).
	$(GOLANGCI_LINT) run ./...

.PHONY: verify
verify: generate manifests ## Fail when generated files are stale, code is unformatted, or a Dockerfile's binary does not build from what it copies.
	@git diff --exit-code -- api config || { echo "generated files are stale: run 'make generate manifests' and commit"; exit 1; }
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	go vet ./...
	$(MAKE) --no-print-directory lint
	go run ./test/tools/checkdockerfiles

KUBE_SCORE := $(BIN)/kube-score
# kube-score checks left out, and why:
#  pod-networkpolicy: the webhook must be reachable from the API server, whose source address
#    differs from cluster to cluster; a NetworkPolicy is the cluster owner's to write.
#  container-image-pull-policy: releases are immutable tags; IfNotPresent is right for them.
#  deployment-replicas: one active manager (leader election); manager.replicas=2 for failover.
KUBE_SCORE_IGNORE := --ignore-test pod-networkpolicy --ignore-test container-image-pull-policy --ignore-test deployment-replicas

.PHONY: chart-lint
chart-lint: $(HELM) $(CT) $(KUBE_SCORE) ## Lint the chart: chart-testing (ct lint --all; needs yamllint) and kube-score, for every values file in its ci/ folder.
	PATH="$(BIN):$$PATH" $(CT) lint --config ct.yaml --all
	for values in charts/kubernaut-executor/ci/*.yaml; do \
		echo "kube-score: $$values"; \
		$(HELM) template kubernaut-executor charts/kubernaut-executor -n kubernaut-system -f $$values 2>/dev/null \
			| $(KUBE_SCORE) score $(KUBE_SCORE_IGNORE) - || exit 1; \
	done

.PHONY: build
build: ## Build the manager, the kubectl plugin (bin/kubectl-kubernaut), the action image's binary, the example action and the local control plane tool.
	go build -ldflags "-X main.version=$(VERSION)" -o $(BIN)/manager ./cmd/manager
	go build -ldflags "-X main.version=$(VERSION)" -o $(BIN)/kubectl-kubernaut ./cmd/kubectl-kubernaut
	go build -o $(BIN)/kubernaut-actions ./actions
	go build -o $(BIN)/label-deployment ./examples/label-deployment
	go build -o $(BIN)/localcluster ./test/cmd/localcluster
	go build -o $(BIN)/auditreceiver ./test/cmd/auditreceiver

.PHONY: images
images: ## Build the manager's and the action's images with the first builder found (docker with a reachable daemon, podman, buildah); without one, say so and succeed.
	@if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then builder="docker build"; \
	elif command -v podman >/dev/null 2>&1; then builder="podman build"; \
	elif command -v buildah >/dev/null 2>&1; then builder="buildah bud"; \
	else echo "make images: no container builder is available (docker with a reachable daemon, podman or buildah): no image built"; exit 0; fi; \
	echo "$$builder -f cmd/manager/Dockerfile -t $(MANAGER_IMAGE)"; \
	$$builder -f cmd/manager/Dockerfile --build-arg VERSION=$(VERSION) -t $(MANAGER_IMAGE) .; \
	echo "$$builder -f actions/Dockerfile -t $(ACTIONS_IMAGE)"; \
	$$builder -f actions/Dockerfile -t $(ACTIONS_IMAGE) .

.PHONY: controlplane
controlplane: ## Build (or reuse from the cache) etcd, kube-apiserver, kube-controller-manager and kube-scheduler.
	@test/tools/build-control-plane.sh >/dev/null

##@ Test

.PHONY: test
test: controlplane build $(GINKGO) $(HELM) $(KWOK) ## Run every test: unit tests and the suites on the local control plane.
	KUBEBUILDER_ASSETS="$$(test/tools/build-control-plane.sh)" KUBERNAUT_BIN="$(BIN)" KWOK="$(KWOK)" \
		$(GINKGO) -r --randomize-all --timeout=25m $(GINKGO_ARGS) ./...

FUZZTIME ?= 10s

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME: a duration (default 10s) or a count of inputs (20000x, as CI does).
	go test -run '^$$' -fuzz FuzzEncode -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./actions/sdk
	go test -run '^$$' -fuzz FuzzTruncateUTF8 -fuzztime $(FUZZTIME) ./api/v1alpha1
	go test -run '^$$' -fuzz FuzzValidate -fuzztime $(FUZZTIME) ./internal/paramschema
	go test -run '^$$' -fuzz FuzzRender -fuzztime $(FUZZTIME) ./internal/render

# The scale benchmark: BENCH_N executions at once (BENCH_SIZES=1000,5000,10000 for several runs),
# then BENCH_RATE per second for BENCH_RATE_SECONDS; BENCH_MANAGER_ARGS adds manager flags.
BENCH_N ?= 1000
BENCH_SIZES ?=
BENCH_RATE ?= 20
BENCH_RATE_SECONDS ?= 30
BENCH_MANAGER_ARGS ?=
# The multi-cluster benchmark: BENCH_N executions at once on the hub, then across BENCH_CLUSTERS
# target clusters, and the manager's memory per connected cluster.
BENCH_CLUSTERS ?= 3

.PHONY: bench
bench: bench-go bench-scale bench-multicluster ## Run the Go microbenchmarks, the scale and the multi-cluster benchmarks; print their figures.

.PHONY: bench-go
bench-go: ## Run the Go microbenchmarks.
	go test -run '^$$' -bench . -benchmem ./...

.PHONY: bench-scale
bench-scale: controlplane build $(KWOK) ## Run the scale benchmark on the local control plane (pods finished by kwok); figures in .work/bench/results.json.
	KUBEBUILDER_ASSETS="$$(test/tools/build-control-plane.sh)" KUBERNAUT_BIN="$(BIN)" KWOK="$(KWOK)" \
		BENCH_N="$(BENCH_N)" BENCH_SIZES="$(BENCH_SIZES)" BENCH_RATE="$(BENCH_RATE)" BENCH_RATE_SECONDS="$(BENCH_RATE_SECONDS)" \
		BENCH_MANAGER_ARGS="$(BENCH_MANAGER_ARGS)" go run ./test/cmd/scalebench -out "$(CURDIR)/.work/bench"

.PHONY: bench-multicluster
bench-multicluster: controlplane build $(KWOK) ## Run the multi-cluster benchmark (a hub and BENCH_CLUSTERS targets, pods finished by kwok); figures in .work/bench-multicluster/results.json.
	KUBEBUILDER_ASSETS="$$(test/tools/build-control-plane.sh)" KUBERNAUT_BIN="$(BIN)" KWOK="$(KWOK)" \
		BENCH_SIZES="$(or $(BENCH_SIZES),$(BENCH_N))" BENCH_CLUSTERS="$(BENCH_CLUSTERS)" BENCH_MANAGER_ARGS="$(BENCH_MANAGER_ARGS)" \
		go run ./test/cmd/scalebench -out "$(CURDIR)/.work/bench-multicluster"

# The fault suite (test/chaos, docs/reliability.md): each scenario injects one fault (the manager
# SIGKILLed, the leader of two replicas killed, the API server and etcd restarted, the storage
# service down, the webhook unreachable, action pods evicted or deleted, the manager down past
# the Job TTL, targets and namespaces deleted) into a mixed workload and checks that nothing
# is lost, doubled, left granted or left unaudited. make chaos runs the full version; make test
# runs the short one. CHAOS_SHORT=1 runs the short version here too; CHAOS_SEED=<n> replays a
# run's random schedule (printed at the start). Results in .work/chaos/results.json.
CHAOS_SHORT ?=
CHAOS_SEED ?=

.PHONY: chaos
chaos: controlplane build $(GINKGO) $(KWOK) ## Run the fault scenarios (CHAOS_SHORT=1 for the short version, CHAOS_SEED to replay); fails when an invariant does; figures in .work/chaos/results.json.
	KUBEBUILDER_ASSETS="$$(test/tools/build-control-plane.sh)" KUBERNAUT_BIN="$(BIN)" KWOK="$(KWOK)" \
		CHAOS_FULL=1 CHAOS_SHORT="$(CHAOS_SHORT)" CHAOS_SEED="$(CHAOS_SEED)" \
		$(GINKGO) -v --timeout=90m $(GINKGO_ARGS) ./test/chaos

.PHONY: cluster
cluster: controlplane build ## Start the local control plane by hand, with the CRDs; prints KUBECONFIG=<path>. Ctrl-C stops it.
	KUBEBUILDER_ASSETS="$$(test/tools/build-control-plane.sh)" $(BIN)/localcluster --bin-dir $(BIN) --dir $(CURDIR)/.work/cluster --crd-dir $(CURDIR)/config/crd

.PHONY: demo
demo: controlplane build $(HELM) ## Run an execution end to end on the local control plane (KEEP=1 keeps it running).
	KEEP="$(KEEP)" BIN="$(BIN)" KUBEBUILDER_ASSETS="$$(test/tools/build-control-plane.sh)" test/demo.sh

.PHONY: demo-multicluster
demo-multicluster: controlplane build $(HELM) ## One hub executing on two target clusters (three local control planes; KEEP=1 keeps them running).
	KEEP="$(KEEP)" BIN="$(BIN)" KUBEBUILDER_ASSETS="$$(test/tools/build-control-plane.sh)" test/demo-multicluster.sh

.PHONY: demo-multicluster-down
demo-multicluster-down: ## Stop what `make demo-multicluster KEEP=1` left running.
	BIN="$(BIN)" test/demo-multicluster.sh --down

.PHONY: demo-down
demo-down: ## Stop what `make demo KEEP=1` left running.
	BIN="$(BIN)" test/demo.sh --down

##@ Tools

$(CONTROLLER_GEN):
	go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(BIN)/controller-gen $@

$(HELM):
	go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(BIN)/helm $@
	ln -sf $(notdir $@) $(BIN)/helm

$(CT): tools/go.mod
	cd tools && go install github.com/helm/chart-testing/v3/ct

$(GOLANGCI_LINT): tools/go.mod
	cd tools && go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint

$(KUBE_SCORE): tools/go.mod
	cd tools && go install github.com/zegl/kube-score/cmd/kube-score

$(KWOK):
	go install sigs.k8s.io/kwok/cmd/kwok@$(KWOK_VERSION)
	mv $(BIN)/kwok $@
	ln -sf $(notdir $@) $(BIN)/kwok

$(GINKGO):
	go install github.com/onsi/ginkgo/v2/ginkgo@$(GINKGO_VERSION)
	mv $(BIN)/ginkgo $@
