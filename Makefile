# ccs: the two set-up commands are `make run` and `make test`.
CARGO ?= cargo
DEMO_HOME := $(CURDIR)/target/demo

.PHONY: run test lint fmt build bench demo clean

## Build (release) and run the server in the foreground with ~/.claude-code-server.
run:
	$(CARGO) run --release --bin ccs -- serve

## The whole test suite: unit tests and the integration tests (real binary, fake claude CLI).
test:
	$(CARGO) test --all-targets

## Formatting and clippy, warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --release

## Queue benchmark (release build): async throughput vs the fake CLI run directly, submit latency.
bench:
	$(CARGO) bench --bench queue

## The server with the fake claude CLI of the tests (no Claude account needed), state in target/demo.
demo:
	$(CARGO) build --release --bins
	mkdir -p $(DEMO_HOME)
	test -f $(DEMO_HOME)/config.json || printf '{\n  "claudePath": "%s",\n  "claudeEnv": {"CLAUDE_CONFIG_DIR": "%s"}\n}\n' \
		"$(CURDIR)/target/release/fake-claude" "$(DEMO_HOME)/claude" > $(DEMO_HOME)/config.json
	./target/release/ccs --home $(DEMO_HOME) serve

clean:
	$(CARGO) clean
