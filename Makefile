# apiconnector-operator. Every tool runs through Go at a pinned version; nothing is downloaded as a
# binary. `make help` lists the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

GO ?= go
TOOLS := $(GO) tool -modfile=hack/tools/dev/go.mod
CONTROLLER_GEN := $(TOOLS) controller-gen
STATICCHECK := $(TOOLS) staticcheck
IMG_RUNTIME ?= apiconnector-runtime:dev
FUZZTIME ?= 15s
TEST_FLAGS ?= -race -count=1
# cert-manager's real CRDs, read from its Go module, validate every Certificate the controller writes.
CERT_MANAGER_VERSION ?= v1.21.2
CERT_MANAGER_CRDS = $$($(GO) mod download -json github.com/cert-manager/cert-manager@$(CERT_MANAGER_VERSION) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/deploy/crds
TEST_ENV = KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" CERT_MANAGER_CRDS="$(CERT_MANAGER_CRDS)"

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z0-9_-]+:.*##/ {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: manifests
manifests: ## Generate the CRD and RBAC from the API types and controller markers.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=manager-role paths=./controllers/... output:rbac:artifacts:config=config/rbac
	$(GO) run ./hack/apidocs config/crd/bases/apiconnector.dev_apiconnectors.yaml docs/api.md

.PHONY: generate
generate: ## Generate deepcopy functions.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: verify-generated
verify-generated: manifests generate ## Fail when committed generated files are stale.
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

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver and etcd from the Go module proxy (cached in bin/).
	@hack/envtest-assets.sh >/dev/null

.PHONY: test
test: verify-generated lint envtest-assets ## Everything CI runs: generated files, lint, unit + envtest suites, fuzz smoke.
	$(TEST_ENV) $(GO) test $(TEST_FLAGS) ./...
	$(MAKE) fuzz

.PHONY: fuzz
fuzz: ## Run each fuzz target briefly (FUZZTIME).
	@for t in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$t/*_test.go | sed 's/^func //'); do \
			echo "fuzz $$t $$f"; $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$t || exit 1; \
		done; \
	done

.PHONY: build
build: ## Build the manager and the runtime into bin/.
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/manager .
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/apiconnector-runtime ./runtime/cmd/apiconnector-runtime

.PHONY: run
run: manifests ## Run the manager against the cluster in $$KUBECONFIG.
	$(GO) run . --runtime-image=$(IMG_RUNTIME)
