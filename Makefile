# apiconnector-operator. Every tool runs through Go at a pinned version; nothing is downloaded as a
# binary. `make help` lists the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

GO ?= go
# go.mod's toolchain line names the first Go release without the vulnerabilities govulncheck
# reports; with `auto` an older local Go fetches that release through the Go module proxy
# (checked against the checksum database) instead of building with itself. GOTOOLCHAIN=local in
# the environment opts out (and `make vuln` then reports the older standard library).
GOTOOLCHAIN ?= auto
export GOTOOLCHAIN
TOOLS := $(GO) tool -modfile=hack/tools/dev/go.mod
CONTROLLER_GEN := $(TOOLS) controller-gen
STATICCHECK := $(TOOLS) staticcheck
GOVULNCHECK := $(GO) tool -modfile=hack/tools/vuln/go.mod govulncheck
IMG_RUNTIME ?= apiconnector-runtime:dev
FUZZTIME ?= 15s
# One version for the binaries (--version, apiconnector_build_info), the images' tags and labels,
# and a release's chart and manifests; VERSION=vX.Y.Z for a release.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS = -X github.com/apiconnector/operator/internal/version.version=$(VERSION)
# The commit's time: every time stamped into a release (image configs, SBOMs, the chart archive),
# so the same commit and VERSION give the same digests.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
# Where the released images are published: $(REGISTRY)/apiconnector-operator and
# $(REGISTRY)/apiconnector-runtime.
REGISTRY ?= ghcr.io/apiconnector
PLATFORMS ?= linux/amd64,linux/arm64
DIST ?= dist
TEST_FLAGS ?= -race -count=1
# cert-manager's real CRDs, read from its Go module, validate every Certificate the controller writes.
CERT_MANAGER_VERSION ?= v1.21.2
CERT_MANAGER_CRDS = $$($(GO) mod download -json github.com/cert-manager/cert-manager@$(CERT_MANAGER_VERSION) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/deploy/crds
# The Gateway API's real CRDs, read from its Go module, validate every route the controller writes.
GATEWAY_API_VERSION ?= v1.6.3
GATEWAY_API_CRDS = $$($(GO) mod download -json sigs.k8s.io/gateway-api@$(GATEWAY_API_VERSION) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/config/crd/standard
# Flux's Kustomization CRD, read from the kustomize-controller module, validates config/samples/flux
# (v1.9.6: the newest whose go.mod asks for no newer Go than go.mod's toolchain).
FLUX_KUSTOMIZE_VERSION ?= v1.9.6
FLUX_CRDS = $$($(GO) mod download -json github.com/fluxcd/kustomize-controller@$(FLUX_KUSTOMIZE_VERSION) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/config/crd/bases
# The Prometheus Operator's CRDs, read from its module, validate the chart's ServiceMonitor.
PROMETHEUS_OPERATOR_VERSION ?= v0.85.0
PROMETHEUS_OPERATOR_CRDS = $$($(GO) mod download -json github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/example/prometheus-operator-crd
TEST_ENV = KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" CERT_MANAGER_CRDS="$(CERT_MANAGER_CRDS)" GATEWAY_API_CRDS="$(GATEWAY_API_CRDS)" FLUX_CRDS="$(FLUX_CRDS)" PROMETHEUS_OPERATOR_CRDS="$(PROMETHEUS_OPERATOR_CRDS)"

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z0-9_-]+:.*##/ {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: manifests
manifests: ## Generate the CRD and RBAC from the API types and controller markers.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=manager-role paths=./controllers/... output:rbac:artifacts:config=config/rbac
	$(GO) run ./hack/apidocs config/crd/bases/apiconnector.dev_apiconnectors.yaml config/crd/bases/apiconnector.dev_entratenants.yaml docs/api.md
	cp config/crd/bases/*.yaml config/charts/apiconnector-operator/crds/
	cp config/rbac/role.yaml config/rbac/apiconnector_editor_role.yaml config/rbac/apiconnector_viewer_role.yaml \
		config/namespaced/manager_crd_role.yaml config/admission/runtime_image_policy.yaml \
		config/components/monitoring/prometheusrule.yaml config/components/monitoring/dashboard.json config/charts/apiconnector-operator/files/

.PHONY: generate
generate: ## Generate deepcopy functions.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: chart-docs
chart-docs: ## Generate the chart's README.md from README.md.gotmpl and values.yaml's comments (helm-docs).
	$(GO) tool -modfile=hack/tools/docs/go.mod helm-docs --chart-search-root=config/charts --log-level=warning

.PHONY: verify-generated
verify-generated: manifests generate chart-docs ## Fail when committed generated files are stale.
	@git diff --exit-code -- api config docs/api.md || { echo "generated files are stale: run 'make manifests generate' and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- api config docs/api.md)" || { git status --porcelain -- api config docs/api.md; echo "untracked generated files: commit them" >&2; exit 1; }

.PHONY: fmt
fmt: ## Format the code.
	$(GO) fmt ./...

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: lint
lint: ## gofmt check, go vet and staticcheck.
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; test -z "$$out" || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(STATICCHECK) ./...

.PHONY: vuln
vuln: ## govulncheck (reachable vulnerabilities) against the database built from the pinned golang.org/x/vulndb module, offline.
	@db="$$(hack/vulndb.sh)"; echo "govulncheck -db file://$$db"; $(GOVULNCHECK) -db "file://$$db" ./...

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver, etcd and kubectl from the Go module proxy (cached in bin/).
	@hack/envtest-assets.sh >/dev/null

.PHONY: promtool
promtool: ## Build promtool (pinned in hack/tools/promtool) once, before config/alerts_test.go runs `promtool test rules` with it.
	cd hack/tools/promtool && $(GO) tool promtool --version >/dev/null

.PHONY: test
test: verify-generated lint vuln envtest-assets promtool ## Generated files, lint, govulncheck, unit + envtest suites, fuzz smoke (CI then runs e2e).
	$(TEST_ENV) $(GO) test $(TEST_FLAGS) ./...
	cd hack/images && $(GO) test -count=1 ./...
	$(MAKE) fuzz

.PHONY: fuzz
fuzz: ## Run each fuzz target briefly (FUZZTIME).
	@for t in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$t/*_test.go | sed 's/^func //'); do \
			echo "fuzz $$t $$f"; $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$t || exit 1; \
		done; \
	done

.PHONY: bench
bench: bench-runtime ## All benchmarks (runtime, latency, controller, rollout on the local cluster); writes hack/bench/results/.
	$(MAKE) bench-latency
	$(MAKE) bench-controller
	$(MAKE) bench-rollout

.PHONY: bench-latency
bench-latency: ## Answer times with slow, failing and hanging dependencies at 50 and 500 req/s, 1 s and 2 s budgets (about 45 s).
	$(GO) run ./hack/bench/latency $(BENCH_LATENCY_FLAGS)

.PHONY: bench-rollout
bench-rollout: ## A rules edit rolled out under load on the real local cluster (root, like e2e; under a minute with built binaries).
	@$(MAKE) --no-print-directory cluster-run CLUSTER_RUN_NAME=bench-rollout CLUSTER_RUN='$(GO) test -tags e2e -count=1 -v -timeout 15m -run "^TestRollout$$$$" ./hack/e2e'

.PHONY: bench-controller
bench-controller: ## 1 000 connectors on a real kube-apiserver: settle time, manager RSS, API requests, steady-state reconciles.
	$(GO) run ./hack/bench/controller

.PHONY: bench-runtime
bench-runtime: ## Runtime vs bare net/http vs Node.js, each pinned to one CPU (about 1 min); allocation benchmarks of one request.
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=100ms -count=1 ./runtime/entra ./runtime/rules ./runtime/server ./runtime/cmd/apiconnector-runtime | tee hack/bench/results/runtime-allocs.txt
	$(GO) run ./hack/bench/runtime $(BENCH_RUNTIME_FLAGS)

.PHONY: demo
demo: ## Local control plane + operator + sample connector; prints the three Entra answers.
	$(GO) run ./hack/demo

.PHONY: build
build: ## Build the manager and the runtime into bin/.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/manager .
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/apiconnector-runtime ./runtime/cmd/apiconnector-runtime

.PHONY: run
run: manifests ## Run the manager against the cluster of the current kubeconfig.
	$(GO) run . --runtime-image=$(IMG_RUNTIME)

.PHONY: images
images: ## Images without Docker: host-arch tarballs in bin/images for the e2e cluster; OCI=DIR: the released images for PLATFORMS with SBOMs as OCI layouts; PUSH=1: and push them to REGISTRY.
	@if [ -n "$(OCI)$(PUSH)" ]; then \
		cd hack/images && SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run . -root $(CURDIR) -version $(VERSION) -platforms $(PLATFORMS) \
			-oci $(abspath $(or $(OCI),$(DIST)/images)) $(if $(PUSH),-push $(REGISTRY)); \
	else \
		cd hack/images && $(GO) run . -root $(CURDIR) -version $(VERSION) -out $(CURDIR)/bin/images; \
	fi

.PHONY: release
release: ## DIST (dist/): install.yaml, Helm chart, images (OCI layouts, PLATFORMS) with SPDX SBOMs, SHA256SUMS for VERSION=vX.Y.Z (docs/release.md).
	@$(GO) run ./hack/release -version $(VERSION) -check
	@test -n "$(ALLOW_DIRTY)" -o -z "$$(git status --porcelain)" || { git status --short; echo "uncommitted changes: a release is built from a commit (ALLOW_DIRTY=1 builds anyway)" >&2; exit 1; }
	rm -rf $(DIST) && mkdir -p $(DIST)
	cd hack/images && SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run . -root $(CURDIR) -version $(VERSION) -platforms $(PLATFORMS) \
		-oci $(abspath $(DIST))/images -sbom $(abspath $(DIST))
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./hack/release -version $(VERSION) -registry $(REGISTRY) -dist $(DIST)

.PHONY: verify-release
verify-release: ## Build the release twice, the second time with an empty Go build cache, and fail unless every file is identical (slow).
	$(MAKE) --no-print-directory release DIST=$(DIST)
	cache=$$(mktemp -d); trap 'chmod -R u+w $$cache; rm -rf $$cache' EXIT; \
		GOCACHE=$$cache $(MAKE) --no-print-directory release DIST=$(DIST).again && \
		diff -r $(DIST) $(DIST).again && echo "reproducible: $(DIST) and $(DIST).again are identical"

.PHONY: publish
publish: ## Push the images in DIST with their SBOMs to REGISTRY, tagged VERSION, and the chart to oci://REGISTRY/charts (then the GitHub release: docs/release.md).
	cd hack/images && $(GO) run . -oci $(abspath $(DIST))/images -push $(REGISTRY) -build=false
	@set -- $(DIST)/apiconnector-operator-*.tgz; test $$# -eq 1 -a -f "$$1" || { echo "want one chart in $(DIST), found: $$*" >&2; exit 1; }; \
		set -x; $(GO) tool -modfile=hack/tools/helm/go.mod helm push "$$1" oci://$(REGISTRY)/charts $(HELM_PUSH_FLAGS)

.PHONY: e2e
e2e: ## End to end on a real single-node cluster (root; docs/e2e.md). E2E_KEEP=1 leaves it up.
	@$(MAKE) --no-print-directory cluster-run CLUSTER_RUN_NAME=e2e CLUSTER_RUN='$(GO) test -tags e2e -count=1 -v -timeout 30m -run "^TestE2E$$$$" ./hack/e2e'

# cluster-run starts the local cluster, runs CLUSTER_RUN with its environment, and stops it
# (unless E2E_KEEP is set), whatever the outcome.
.PHONY: cluster-run
cluster-run:
	@start=$$(date +%s); \
	finish() { rc=$$?; if [ -z "$(E2E_KEEP)" ]; then $(GO) run ./hack/cluster down || rc=1; fi; \
		echo "$(CLUSTER_RUN_NAME) took $$(( $$(date +%s) - start ))s (exit $$rc)"; exit $$rc; }; \
	trap finish EXIT; \
	$(GO) run ./hack/cluster up; \
	eval "$$($(GO) run ./hack/cluster env)"; \
	$(CLUSTER_RUN)
