# IronLB build, test and demo. Every target installs or builds what it needs
# on a fresh Debian machine (as root) and caches heavy builds under bin/.

SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
K8S := $(BIN)/k8s
CONTROLLER_GEN := $(BIN)/controller-gen
CONTROLLER_GEN_VERSION := v0.23.0
export KUBEBUILDER_ASSETS := $(K8S)

.PHONY: soak-l2 packages all build generate test test-unit lint bench bench-allocator bench-speaker bench-controller bench-l2 bench-bgp bench-dataplane demo demo-down tools clean

all: build

build: $(BIN)/controller $(BIN)/speaker $(BIN)/podserver

GO_SOURCES := $(shell find api controller speaker internal -name '*.go' -not -name '*_test.go') go.mod go.sum

$(BIN)/controller $(BIN)/speaker: $(BIN)/%: $(GO_SOURCES)
	CGO_ENABLED=0 $(GO) build -trimpath -o $@ ./$*

# The lab's stand-in for application pods.
$(BIN)/podserver: e2etest/cmd/podserver/main.go
	CGO_ENABLED=0 $(GO) build -trimpath -o $@ ./e2etest/cmd/podserver

# --- tools: Debian packages, controller-gen, kube-apiserver and etcd --------

APT_PACKAGES := etcd-server iproute2 arping ndisc6 nftables tcpdump iputils-ping curl
# Routers for the BGP lab: FRR (the tests), BIRD 2 and gobgpd (interop).
APT_PACKAGES += frr bird2 gobgpd

# Checked on every run (dpkg -s is quick), so a package added here reaches
# machines that already ran make.
packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(CONTROLLER_GEN):
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)

$(K8S)/kube-apiserver $(K8S)/kube-proxy: $(K8S)/%: hack/build-k8s.sh hack/tools/%/go.mod
	hack/build-k8s.sh $* $(K8S)

$(K8S)/etcd: | packages
	@mkdir -p $(K8S)
	ln -sf /usr/bin/etcd $@

tools: packages $(CONTROLLER_GEN) $(K8S)/kube-apiserver $(K8S)/etcd

# --- generated code ----------------------------------------------------------

generate: $(CONTROLLER_GEN)
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=manifests/crds

# --- checks ------------------------------------------------------------------

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-clean:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Everything CI runs: lint, unit tests with fuzz seeds, and the integration
# tests against a real kube-apiserver and etcd.
test: tools lint build
	$(GO) test -count=1 -timeout 25m ./...

test-unit:
	$(GO) test -count=1 ./internal/pool/ ./internal/allocator/

# --- benchmarks ----------------------------------------------------------------

bench: bench-allocator bench-speaker bench-controller

bench-allocator:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/allocator/

# The pure stages every speaker sync runs, at 10,000 Services.
bench-speaker:
	$(GO) test -run '^$$' -bench SyncStages -benchmem ./internal/speaker/

# Creates N pending Services with the controller stopped, starts it, and
# prints time to all assigned, CPU seconds, RSS, and a restart's IP changes.
bench-controller: tools build
	IRONLB_CONTROLLER=$(BIN)/controller $(GO) test -count=1 -run '^$$' -bench BenchmarkControllerScale -benchtime=1x -timeout 40m ./e2etest/

# Layer-2 failover and announcement on the network-namespace cluster lab:
# graceful (SIGTERM) and crash (SIGKILL, link down) failover to the first
# ARP answer and the router's neighbour entry, Service creation to the first
# ARP answer, and speaker RSS/CPU with 200 and 1,000 Services. Prints p50 and
# max over IRONLB_BENCH_L2_RUNS runs (default 10). Needs root.
bench-l2: tools build
	IRONLB_CONTROLLER=$(BIN)/controller IRONLB_SPEAKER=$(BIN)/speaker $(GO) test -count=1 -run '^$$' -bench 'BenchmarkL2(GracefulFailover|CrashFailover|ServiceCreate|SpeakerResources)$$' -benchtime=1x -timeout 30m ./e2etest/

# BGP figures on the network-namespace cluster lab with FRR as the router:
# Service creation to the route in the router's kernel table, an endpoint
# going unready to the route withdrawn, 200 and 1,000 Services advertised at
# once (time and speaker RSS), SIGTERM to the route withdrawn (with FRR's
# Cease NOTIFICATION), and a TCP MD5 password change to the sessions back.
# Prints p50 and max over IRONLB_BENCH_BGP_RUNS runs (default 20). Needs root.
bench-bgp: tools build
	IRONLB_CONTROLLER=$(BIN)/controller IRONLB_SPEAKER=$(BIN)/speaker $(GO) test -count=1 -run '^$$' -bench 'BenchmarkBGP(ServiceCreate|EndpointUnready|Scale|GracefulStop|PasswordChange)$$' -benchtime=1x -timeout 30m ./e2etest/

# nftables dataplane (issue 6) against the real kernel, in a fresh network
# namespace: full sync at 1,000 and 10,000 services x 10 endpoints with the
# table absent and present, one endpoint change at 10,000 services; prints
# s/sync, nft vs Go CPU, rule/chain/element counts and RSS. Needs root and nft
# (fails otherwise). Then the same Services, 1,000 and 10,000, in the lab
# with a real API server: IronLB's speaker and kube-proxy v1.37.2's nftables
# mode (built once into bin/k8s like kube-apiserver) side by side, full sync,
# endpoint change and RSS for each, and their ratios.
bench-dataplane: tools build $(K8S)/kube-proxy
	IRONLB_BENCH_DATAPLANE=1 $(GO) test -count=1 -run '^$$' -bench . -benchtime=1x -timeout 20m ./internal/dataplane/nft/
	IRONLB_CONTROLLER=$(BIN)/controller IRONLB_SPEAKER=$(BIN)/speaker IRONLB_KUBE_PROXY=$${IRONLB_KUBE_PROXY:-$(K8S)/kube-proxy} \
	  $(GO) test -count=1 -run '^$$' -bench 'BenchmarkDataplaneVsKubeProxy$$' -benchtime=1x -timeout 60m ./e2etest/

# Ten minutes of the three-node lab with every CPU busy: counts spurious
# failovers (must be 0).
soak-l2: tools build
	IRONLB_CONTROLLER=$(BIN)/controller IRONLB_SPEAKER=$(BIN)/speaker \
	  $(GO) test -count=1 -run '^$$' -bench BenchmarkL2Soak -benchtime=1x -timeout 30m ./e2etest/

# --- demo ------------------------------------------------------------------------

# The demo, as root: network namespaces ilb-{sw,router,client,node1..3}, a
# kube-apiserver on 10.255.1.1 (interface ilb-mg), the controller, a speaker
# per node, and a dual-stack Service answered by ARP/NDP. State, kubeconfig
# and logs in /tmp/ironlb-lab (IRONLB_LAB_DIR); binaries bin/controller and
# bin/speaker (IRONLB_CONTROLLER, IRONLB_SPEAKER). Run again to show it again.
demo: tools build
	$(GO) run ./e2etest/cmd/lab up

# Stops every process and removes the namespaces, ilb-mg and the state.
demo-down:
	$(GO) run ./e2etest/cmd/lab down

clean: demo-down
	rm -rf $(BIN)

# --- IPVS against a real kernel ---------------------------------------------------

.PHONY: test-ipvs
IPVSVM := $(BIN)/ipvsvm

# Debian's kernel, for the VM: vmlinuz and the modules, fetched once.
$(IPVSVM)/kernel/.extracted: hack/ipvsvm/fetch-kernel.sh
	hack/ipvsvm/fetch-kernel.sh $(IPVSVM)/kernel

# The IPVS backend's real-kernel tests (internal/dataplane/ipvs/vm_test.go,
# tag ipvsvm) in a QEMU VM (TCG, one vCPU, 512 MiB) on Debian's kernel with
# ip_vs, its schedulers, dummy and veth loaded by a static Go /init
# (hack/ipvsvm): a pod namespace behind a veth, a VIP forwarded to it,
# traffic from a client namespace, endpoint changes, hand deletions
# repaired. Not part of `make test`: the host kernel needs no IPVS. Output
# in bin/ipvsvm/console.log.
test-ipvs: $(IPVSVM)/kernel/.extracted
	@dpkg -s qemu-system-x86 >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86; }
	CGO_ENABLED=0 $(GO) build -trimpath -o $(IPVSVM)/init ./hack/ipvsvm/init
	CGO_ENABLED=0 $(GO) test -c -tags ipvsvm -o $(IPVSVM)/ipvs.test ./internal/dataplane/ipvs
	$(GO) run ./hack/ipvsvm -kernel $(IPVSVM)/kernel -init $(IPVSVM)/init -test $(IPVSVM)/ipvs.test \
	  -initramfs $(IPVSVM)/initramfs.cpio 2>&1 | tee $(IPVSVM)/console.log
	@if grep -q '^ipvsvm: PASS' $(IPVSVM)/console.log && ! grep -qE -- '--- FAIL|^FAIL|^panic:' $(IPVSVM)/console.log; then \
	  echo "test-ipvs: $$(grep -c -- '--- PASS' $(IPVSVM)/console.log) passed, 0 failed"; \
	else \
	  echo "test-ipvs: failed: $$(grep -E -- '--- FAIL|^ipvsvm: FAIL|^panic:' $(IPVSVM)/console.log | head -5)"; exit 1; \
	fi
