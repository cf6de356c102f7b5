# Chat: NATS-based microservices. `make run` for the all-in-one dev stack,
# `make test` for every test of every module.

GO       ?= go
MODULES  := $(shell $(GO) list -m -f '{{.Dir}}')
BINARIES := gateway history bot sms-worker accounts allinone
TEST_FLAGS ?= -race -count=1 -timeout 15m

.PHONY: all build run test vet tidy clean bench bench-peers images cluster-test chaos

all: build

## build: every binary into bin/
build:
	@mkdir -p bin
	$(GO) build -o bin/gateway ./services/gateway/cmd/gateway
	$(GO) build -o bin/history ./services/history/cmd/history
	$(GO) build -o bin/bot ./services/bot/cmd/bot
	$(GO) build -o bin/sms-worker ./services/smsworker/cmd/sms-worker
	$(GO) build -o bin/accounts ./services/accounts/cmd/accounts
	$(GO) build -o bin/allinone ./services/allinone
	$(GO) build -o bin/chatbench ./bench

## run: the whole chat in one process at http://localhost:8080
# Built, then run in a process group of its own (set -m) when on a terminal:
# Ctrl-C then reaches the all-in-one alone, which shuts down and exits 0, and
# so does make. (go run exited 1 on Ctrl-C; a make that gets the Ctrl-C
# itself exits 130 whatever its command did.)
run:
	@mkdir -p bin
	$(GO) build -o bin/allinone ./services/allinone
	@if [ -t 0 ]; then set -m; fi; bin/allinone

## vet: no binary or large file tracked, then gofmt and go vet over every module
vet:
	@sh .ci/tracked-files
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@for m in $(MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done

## test: vet, then every module's tests with the race detector
test: vet
	@fail=0; for m in $(MODULES); do \
		echo "== $$m"; (cd $$m && $(GO) test $(TEST_FLAGS) ./...) || fail=1; \
	done; exit $$fail

## images: one container image per service, chat-<service> (needs a Docker engine)
SERVICES := gateway history bot sms-worker accounts
images:
	@for s in $(SERVICES); do \
		docker build --build-arg SERVICE=$$s -t chat-$$s . || exit 1; \
	done

## cluster-test: the production topology as processes (3-node NATS cluster, Postgres from TEST_DATABASE_URL)
cluster-test:
	cd deploy && $(GO) test -race -count=1 -run 'TestCluster' -v .

## chaos: the fault suite (processes on loopback, Postgres from TEST_DATABASE_URL): one table, fails on any loss or duplicate
chaos:
	cd deploy && $(GO) test -tags chaos -count=1 -timeout 30m -run 'TestChaos' -v .

## bench: a fresh all-in-one pinned to CPU 0, chatbench pinned to CPU 1, every scenario
bench:
	bash bench/run.sh

## bench-peers: the same scenarios against the chat and Centrifugo v6.9.1 (installed once into bin/), one at a time on CPU 0; RUNS=3 for median [min-max]
bench-peers:
	bash bench/peers.sh

tidy:
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy) || exit 1; done

clean:
	rm -rf bin
