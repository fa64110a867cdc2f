# ccs: the two set-up commands are `make run` and `make test`.
CARGO ?= cargo
DEMO_HOME := $(CURDIR)/target/demo

# The real claude CLI for the end-to-end tests (offline, against a mock API): a current
# version and an older pure-JS one. `make real-cli` installs them; `make test` uses them if there.
REAL_CLI_VERSION := 2.1.197
REAL_CLI_OLD_VERSION := 2.0.77
REAL_CLI_DIR := $(CURDIR)/target/real-cli
REAL_CLI := $(REAL_CLI_DIR)/$(REAL_CLI_VERSION)/node_modules/.bin/claude
REAL_CLI_OLD := $(REAL_CLI_DIR)/$(REAL_CLI_OLD_VERSION)/node_modules/.bin/claude

.PHONY: run test lint fmt build bench demo real-cli clean

## Build (release) and run the server in the foreground with ~/.claude-code-server.
run:
	$(CARGO) run --release --bin ccs -- serve

## The whole test suite: unit tests and the integration tests (real binary, fake claude CLI,
## and the real claude CLI when `make real-cli` installed it or CCS_REAL_CLAUDE points to one).
test:
	@if [ -z "$${CCS_REAL_CLAUDE:-$(wildcard $(REAL_CLI))}" ]; then \
	  echo "NOTE: the real claude CLI is not installed: tests/real_cli.rs will be SKIPPED (run 'make real-cli' first)"; fi
	CCS_REAL_CLAUDE="$${CCS_REAL_CLAUDE:-$(wildcard $(REAL_CLI))}" \
	CCS_REAL_CLAUDE_OLD="$${CCS_REAL_CLAUDE_OLD:-$(wildcard $(REAL_CLI_OLD))}" \
	$(CARGO) test --all-targets

## Installs the pinned claude CLI versions from npm into target/real-cli (no account needed:
## the tests point them at a mock API on 127.0.0.1).
real-cli: $(REAL_CLI) $(REAL_CLI_OLD)

$(REAL_CLI_DIR)/%/node_modules/.bin/claude:
	mkdir -p $(REAL_CLI_DIR)/$*
	cd $(REAL_CLI_DIR)/$* && npm install --no-audit --no-fund --loglevel=error @anthropic-ai/claude-code@$*
	$@ --version || node $(REAL_CLI_DIR)/$*/node_modules/@anthropic-ai/claude-code/install.cjs
	$@ --version

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
