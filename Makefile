# lbprobe — see README.md. `make run` starts the demo, `make test` runs every test.
GO        ?= go
BIN       := bin
TOOL      := hack/tool.sh
PKG       := github.com/prometheus/common/version
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH    ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X $(PKG).Version=$(VERSION) -X $(PKG).Revision=$(REVISION) -X $(PKG).Branch=$(BRANCH) -X $(PKG).BuildUser=make
# The same static build as the Dockerfile's.
GOBUILD   := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)"
IMAGE     ?= lbprobe:$(VERSION)

.PHONY: all build run run-static lab test deps unit fuzz lint fmt vet staticcheck tidy-check bench tools docker clean help mixin

all: build

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build bin/lbprobe (static, version stamped)
	$(GOBUILD) -o $(BIN)/lbprobe ./cmd/lbprobe

run: build ## the sandbox: a local API server seeded like the reference cluster, k8s_gateway, and lbprobe (Ctrl-C stops all)
	$(GO) build -o $(BIN)/sandbox ./hack/sandbox
	$(BIN)/sandbox --lbprobe $(BIN)/lbprobe

lab: build ## as root: the reference LAN in network namespaces and its scenarios, printing lbprobe's L2 series as they run
	LBPROBE_LAB_SHOW=1 LBPROBE_BINARY=$(CURDIR)/$(BIN)/lbprobe $(GO) test -count=1 -v -run 'TestReferenceLAN|TestScenarios|TestWrongDNSAnswer|TestOtherImplementations|TestIPv6NDP' ./test/lab/

run-static: build ## static targets only: loopback peers + lbprobe on examples/static.yml (no Kubernetes)
	$(GO) build -o $(BIN)/demotargets ./hack/demotargets
	hack/run-demo.sh

test: deps tools lint unit fuzz ## every test: lint, unit, integration, end to end, a short fuzz of every parser (installs what it needs)

deps: ## the Debian packages the tests use (ip, flock, setpriv), installed when missing (needs root)
	@missing=""; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v flock >/dev/null && command -v setpriv >/dev/null || missing="$$missing util-linux"; \
	if [ -n "$$missing" ]; then apt-get update && apt-get install -y --no-install-recommends $$missing; fi

tools: ## build the pinned tools into the cache (first run only; the Kubernetes binaries take minutes)
	$(TOOL) staticcheck >/dev/null
	$(TOOL) promtool >/dev/null
	$(TOOL) prometheus >/dev/null
	$(TOOL) jsonnet >/dev/null
	$(TOOL) kube-apiserver >/dev/null
	$(TOOL) k8s_gateway >/dev/null
	$(TOOL) helm >/dev/null
	hack/crds.sh prometheus-operator >/dev/null

unit: build ## go test with the race detector
	PROMTOOL=$$($(TOOL) promtool) LBPROBE_BINARY=$(CURDIR)/$(BIN)/lbprobe \
		$(GO) test -race -count=1 ./...

# Every parser of outside input, fuzzed for FUZZTIME each: the config file, DNS replies, the scrape
# timeout header, Service annotations. Crashers land in testdata/fuzz/ of the package: commit them.
FUZZTIME ?= 10s
FUZZ := ./config:FuzzParse ./probe:FuzzDNSReply ./cmd/lbprobe:FuzzScrapeTimeoutHeader ./collector/kube:FuzzServiceAnnotations

fuzz: ## fuzz every parser for FUZZTIME (10s) each
	@for f in $(FUZZ); do \
		pkg=$${f%%:*}; name=$${f##*:}; \
		echo "fuzz $$name in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

lint: fmt-check vet staticcheck tidy-check ## static checks

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

fmt: ## format the Go code
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

staticcheck:
	$$($(TOOL) staticcheck) ./...

tidy-check: ## go.mod and go.sum are tidy
	cp go.mod $(BIN)/.go.mod.bak 2>/dev/null || (mkdir -p $(BIN) && cp go.mod $(BIN)/.go.mod.bak)
	cp go.sum $(BIN)/.go.sum.bak
	$(GO) mod tidy
	@if ! cmp -s go.mod $(BIN)/.go.mod.bak || ! cmp -s go.sum $(BIN)/.go.sum.bak; then \
		cp $(BIN)/.go.mod.bak go.mod; cp $(BIN)/.go.sum.bak go.sum; \
		echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit"; exit 1; fi

mixin: ## format the jsonnet mixin and regenerate mixin/generated and the PrometheusRule (commit the result)
	$$($(TOOL) jsonnetfmt) -i $$(find mixin -name '*.jsonnet' -o -name '*.libsonnet')
	hack/mixin.sh

bench: ## benchmarks: probes, a round over 1,000 and 10,000 loopback targets
	$(GO) test -run '^$$' -bench . -benchmem ./...

docker: ## build the container image (needs a Docker engine)
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) --build-arg BRANCH=$(BRANCH) -t $(IMAGE) .

clean:
	rm -rf $(BIN)
