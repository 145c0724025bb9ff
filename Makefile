# The two commands of the README: `make demo` and `make test`. Both run
# scripts/setup first, which installs what is missing (as root on Debian 12).

CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: demo demo-host test lint unit static bench fuzz setup disk-image

setup:
	@scripts/setup

## The main job: the VM boots (QEMU, TCG) and three owners run their
## computation in it, end to end, in readable output.
demo: setup
	@scripts/demo-vm

## The VM as a UEFI disk image (a UKI on a GPT disk, the release agent) in
## the formats the clouds import, with their SHA-256: target/disk/
## (docs/disk-image.md; scripts/build-disk-image --simulated-tee makes the
## one scripts/launch-vm --disk-image boots here).
disk-image: setup
	@scripts/build-disk-image

## The same flow with the agent as a host process (quick, no VM).
demo-host: setup
	@scripts/demo

## Every test, and the checks CI enforces: formatting, clippy, docs, tests.
test: setup lint static unit

## Supply chain: licences, banned and duplicate crates, sources (deny.toml);
## scripts/install-cargo-deny installs the pinned cargo-deny when missing.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked --workspace --no-deps --quiet
	scripts/install-cargo-deny
	$(CARGO) deny --locked check licenses bans sources

unit:
	scripts/test

## The release agent is fully static, tss-esapi included; prints its size.
static:
	scripts/check-static-agent

## Benchmarks: figures printed, not asserted.
bench: setup
	@scripts/bench

## Fuzzing (nightly, cargo-fuzz): every target for FUZZ_SECONDS (default 180)
## each; prints executions and findings per target (docs/fuzzing.md).
fuzz:
	@scripts/fuzz
