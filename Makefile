# ccs: the two set-up commands are `make run` and `make test`.
CARGO ?= cargo
DEMO_HOME := $(CURDIR)/target/demo

# The real claude CLI for the end-to-end tests (offline, against a mock API), one per line of
# CLIs ccs supports: the oldest 1.0.x, the last pure-JS 2.0.x, the one `npm install` picks on
# Node 20, and the newest on npm when this list was last updated (`npm view
# @anthropic-ai/claude-code version`; bump it here). `make real-cli` installs them (~20 s each);
# `make test` hands each one that is installed to tests/it/real_cli.rs, which says SKIPPED for the rest.
REAL_CLI_VERSION := 2.1.197
REAL_CLI_OLD_VERSION := 2.0.77
REAL_CLI_1_0_VERSION := 1.0.128
REAL_CLI_NEWEST_VERSION := 2.1.332
REAL_CLI_DIR := $(CURDIR)/target/real-cli
real_cli_bin = $(REAL_CLI_DIR)/$(1)/node_modules/.bin/claude
REAL_CLI := $(call real_cli_bin,$(REAL_CLI_VERSION))
REAL_CLI_OLD := $(call real_cli_bin,$(REAL_CLI_OLD_VERSION))
REAL_CLI_1_0 := $(call real_cli_bin,$(REAL_CLI_1_0_VERSION))
REAL_CLI_NEWEST := $(call real_cli_bin,$(REAL_CLI_NEWEST_VERSION))

# The real CLIs the tests run (each test that needs one it lacks says SKIPPED).
REAL_CLI_ENV = CCS_TEST_PYTHON=$(CURDIR)/target/pyenv/bin/python CCS_REAL_CLAUDE="$${CCS_REAL_CLAUDE:-$(wildcard $(REAL_CLI))}" \
	CCS_REAL_CLAUDE_OLD="$${CCS_REAL_CLAUDE_OLD:-$(wildcard $(REAL_CLI_OLD))}" \
	CCS_REAL_CLAUDE_1_0="$${CCS_REAL_CLAUDE_1_0:-$(wildcard $(REAL_CLI_1_0))}" \
	CCS_REAL_CLAUDE_NEWEST="$${CCS_REAL_CLAUDE_NEWEST:-$(wildcard $(REAL_CLI_NEWEST))}"

.PHONY: run test lint fmt build release install deb bench demo real-cli clean pyenv api-test

## Build (release) and run the server in the foreground with ~/.claude-code-server.
run:
	$(CARGO) run --release --bin ccs -- serve

## The whole test suite: unit tests and the integration tests (real binary, fake claude CLI,
## the vendored tiny_http's own tests,
## and the real claude CLI when `make real-cli` installed it or CCS_REAL_CLAUDE points to one);
## then the integration tests once more with live CLI processes off, and once on the Redis store
## (each test server with a redis-server of its own; `apt-get install redis-server`); the OpenAI
## and Anthropic Python libraries (tests/it/sdk_clients.rs) from target/pyenv (`make pyenv`);
## last, `make api-test`.
test: pyenv
	@for v in CCS_REAL_CLAUDE_1_0=$(REAL_CLI_1_0) CCS_REAL_CLAUDE_OLD=$(REAL_CLI_OLD) \
	          CCS_REAL_CLAUDE=$(REAL_CLI) CCS_REAL_CLAUDE_NEWEST=$(REAL_CLI_NEWEST); do \
	  name=$${v%%=*}; path=$$(printenv $$name || echo $${v#*=}); \
	  [ -e "$$path" ] || echo "NOTE: $$path is not installed: its tests in tests/it/real_cli.rs will be SKIPPED (run 'make real-cli' first, or set $$name)"; \
	done
	$(REAL_CLI_ENV) $(CARGO) test --workspace --all-targets
	@echo "== the integration tests again with live CLI processes off (liveCli.enabled false)"
	$(REAL_CLI_ENV) CCS_TEST_LIVE_CLI=false $(CARGO) test --test it
	@echo "== the integration tests again on the Redis store (storageType redis)"
	$(REAL_CLI_ENV) CCS_TEST_STORAGE=redis $(CARGO) test --test it
	@echo "== the API against its OpenAPI document (schemathesis)"
	$(MAKE) api-test

## Installs the pinned claude CLI versions from npm into target/real-cli (no account needed:
## the tests point them at a mock API on 127.0.0.1).
real-cli: $(REAL_CLI_1_0) $(REAL_CLI_OLD) $(REAL_CLI) $(REAL_CLI_NEWEST)

$(REAL_CLI_DIR)/%/node_modules/.bin/claude:
	mkdir -p $(REAL_CLI_DIR)/$*
	cd $(REAL_CLI_DIR)/$* && npm install --no-audit --no-fund --loglevel=error @anthropic-ai/claude-code@$*
	$@ --version || node $(REAL_CLI_DIR)/$*/node_modules/@anthropic-ai/claude-code/install.cjs
	$@ --version

## The Python side of the tests in target/pyenv (the openai and anthropic clients, schemathesis:
## tests/python/requirements.txt), made again only when that file changes.
PYENV := $(CURDIR)/target/pyenv
PYENV_STAMP := $(CURDIR)/target/pyenv.stamp
pyenv: $(PYENV_STAMP)

# Without the venv, the stamp says nothing.
ifeq ($(wildcard $(PYENV)/bin/python),)
.PHONY: $(PYENV_STAMP)
endif
$(PYENV_STAMP): tests/python/requirements.txt
	test -x $(PYENV)/bin/python || python3 -m venv $(PYENV)
	$(PYENV)/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
	touch $@

## A property test of the running API against its OpenAPI document (src/api/openapi.json) with
## schemathesis: tests/python/api_test.sh starts the debug ccs with the fake claude CLI and
## checks every documented operation (at most 50 examples each, 15 minutes at most).
## API_TEST_ARGS go to `schemathesis run` (e.g. `--seed N` to repeat a run).
API_TEST_ARGS ?=
api-test: pyenv
	$(CARGO) build --bins
	tests/python/api_test.sh $(API_TEST_ARGS)

## Formatting and clippy, warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --release

## A fully static binary (static-pie, glibc linked in): copy it to any x86_64 Linux host.
TARGET := x86_64-unknown-linux-gnu
STATIC := target/$(TARGET)/release/ccs
release:
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release --locked --target $(TARGET) --bin ccs
	@file $(STATIC)
	@ldd $(STATIC) 2>&1 | grep -q 'statically linked\|not a dynamic executable' || { echo "$(STATIC) is not static"; exit 1; }
	@ls -l $(STATIC) | awk '{print "$(STATIC): " $$5 " bytes"}'

## Plain install: `make install PREFIX=/usr/local` (DESTDIR for staging). The systemd unit goes
## to $(PREFIX)/lib/systemd/system; see the README for running it.
PREFIX ?= /usr/local
install: release
	install -Dm755 $(STATIC) $(DESTDIR)$(PREFIX)/bin/ccs
	install -Dm644 packaging/systemd/ccs.service $(DESTDIR)$(PREFIX)/lib/systemd/system/ccs.service
	sed -i 's#/usr/bin/ccs#$(PREFIX)/bin/ccs#' $(DESTDIR)$(PREFIX)/lib/systemd/system/ccs.service

## A .deb with the static binary, the systemd unit and a default /etc/ccs/config.json.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
DEB_ROOT := target/deb/ccs_$(VERSION)_amd64
deb: release
	rm -rf $(DEB_ROOT) && mkdir -p $(DEB_ROOT)/DEBIAN
	install -Dm755 $(STATIC) $(DEB_ROOT)/usr/bin/ccs
	install -Dm644 packaging/systemd/ccs.service $(DEB_ROOT)/lib/systemd/system/ccs.service
	install -Dm644 packaging/deb/config.json $(DEB_ROOT)/etc/ccs/config.json
	install -Dm644 LICENSE $(DEB_ROOT)/usr/share/doc/ccs/copyright
	install -m755 packaging/deb/postinst packaging/deb/prerm $(DEB_ROOT)/DEBIAN/
	echo /etc/ccs/config.json > $(DEB_ROOT)/DEBIAN/conffiles
	printf 'Package: ccs\nVersion: $(VERSION)\nArchitecture: amd64\nMaintainer: ccs developers <ccs@localhost>\nDepends: adduser\nRecommends: nodejs, npm\nSection: net\nPriority: optional\nInstalled-Size: %s\nDescription: the Claude Code CLI as a REST API\n ccs runs claude -p behind an HTTP API with sessions, a task queue and webhooks.\n Install the claude CLI (npm install -g @anthropic-ai/claude-code) for the user ccs.\n' \
	  "$$(du -sk $(DEB_ROOT) | cut -f1)" > $(DEB_ROOT)/DEBIAN/control
	dpkg-deb --build --root-owner-group $(DEB_ROOT) target/deb/ccs_$(VERSION)_amd64.deb
	@dpkg-deb --info target/deb/ccs_$(VERSION)_amd64.deb | sed -n '1,4p'

## The benchmark table (release build, loopback, bounded loads): docs/benchmarks.md keeps the last.
## Its `live` part runs the real CLI that `make real-cli` installed (or CCS_REAL_CLAUDE).
bench: release
	CCS_BIN=$(CURDIR)/$(STATIC) CCS_REAL_CLAUDE="$${CCS_REAL_CLAUDE:-$(REAL_CLI)}" $(CARGO) bench --bench ccs

## The server with the fake claude CLI of the tests (no Claude account needed), state in target/demo.
demo:
	$(CARGO) build --release --bins
	mkdir -p $(DEMO_HOME)
	test -f $(DEMO_HOME)/config.json || printf '{\n  "claudePath": "%s",\n  "claudeEnv": {"CLAUDE_CONFIG_DIR": "%s"}\n}\n' \
		"$(CURDIR)/target/release/fake-claude" "$(DEMO_HOME)/claude" > $(DEMO_HOME)/config.json
	./target/release/ccs --home $(DEMO_HOME) serve

clean:
	$(CARGO) clean
