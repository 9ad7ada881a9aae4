# The two commands a newcomer needs: `make demo` and `make test`.
BIN ?= $(CURDIR)/bin
GO  ?= go

.PHONY: build demo test deps bench fuzz clean

build:
	$(GO) build -o $(BIN)/cfkd ./cmd/cfkd
	$(GO) build -o $(BIN)/cfkctl ./cmd/cfkctl

# Runs cfkd in the foreground on examples/demo.conf: several workers
# sharing one port. Ctrl-C stops everything.
demo: build
	examples/demo.sh $(BIN)

# Installs what the end-to-end tests drive (as root, from Debian), then
# runs every test with the race detector.
test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

deps:
	scripts/install-test-deps

bench: build
	bench/run.sh

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=60s ./console/

clean:
	rm -rf $(BIN)
