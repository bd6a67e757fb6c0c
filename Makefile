# Every module in the tree: the core at the root and the nested ones
# (azblob, bench, cmd/fleet, cmd/poolbench, examples/api, otel, postgres,
# prometheus). `go test ./...` at the root does not enter nested modules,
# so each target loops over them.
MODULES := $(sort $(patsubst %/go.mod,%,$(shell find . -name go.mod -not -path './.git/*')))
GO ?= go

.PHONY: test vet fmt-check demo pictures bench fleet

## test: race-enabled tests in every module (the README's test command),
## several modules at once (.ci/testall.sh says in which order and why);
## it ends with what ran and what was skipped in each, and why
test:
	@bash .ci/testall.sh
	@echo "== go test (without -race, which allocates) the zero-allocation tests"
	@$(GO) test -count=1 -run '^TestHotPathsDoNotAllocate$$' .
	@(cd otel && $(GO) test -count=1 -run '^TestHooksDoNotAllocate$$' .)
	@(cd prometheus && $(GO) test -count=1 -run '^TestHooksDoNotAllocate$$' .)

## vet: go vet in every module
vet:
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) vet ./...); done; $(GO) vet ./.ci/modproxy

## fmt-check: fail if gofmt would change a file
fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

## demo: the main job, poolbench against its embedded TLS data source; it
## writes .out/poolbench.png and .out/poolbench-wait.png, which git
## ignores (run from here, so that the paths it prints are relative to
## this directory)
demo:
	@mkdir -p .out
	$(GO) run ./cmd/poolbench -out .out/poolbench.png $(ARGS)

## pictures: the demo, writing the README's pictures (docs/poolbench.png
## and docs/poolbench-wait.png, which are committed)
pictures:
	$(GO) run ./cmd/poolbench -out docs/poolbench.png $(ARGS)

## fleet: the fleet benchmark (cmd/fleet) against the PostgreSQL server at
## PG_DSN, whose user must be allowed to create a role: five scenarios of
## 20 s runs (about five minutes); prints the report and writes
## docs/fleet.png
fleet:
	cd cmd/fleet && $(GO) run . -seconds 20 -out ../../docs/fleet.png $(ARGS)

## bench: the side-by-side comparison, written to bench/RESULTS.md
bench:
	cd bench && ./run.sh
