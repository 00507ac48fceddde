#!/usr/bin/env bash
# Checks that the workspace's default members build with the `rust-version`
# that Cargo.toml declares, on x86_64 and aarch64 (all targets and features:
# `cargo check`, no codegen). Needs rustup to fetch that toolchain; where it
# cannot (no network), says SKIPPED instead of passing silently.
set -euo pipefail
cd "$(dirname "$0")/.."

msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
if [ -z "$msrv" ]; then
    echo "msrv: no rust-version in Cargo.toml" >&2
    exit 1
fi
if ! command -v rustup >/dev/null ||
    ! timeout 300 rustup toolchain install "$msrv" --profile minimal >/dev/null 2>&1 ||
    ! timeout 300 rustup target add aarch64-unknown-linux-gnu --toolchain "$msrv" >/dev/null 2>&1; then
    echo "msrv: SKIPPED (rustup could not install Rust $msrv here)"
    exit 0
fi
# criterion's dependency `alloca` compiles C in its build script, also for
# `cargo check`: the aarch64 check needs the cross C compiler (Debian's
# gcc-aarch64-linux-gnu, which .ci/aarch64.sh installs too).
if ! command -v aarch64-linux-gnu-gcc >/dev/null && command -v apt-get >/dev/null; then
    SUDO=()
    [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
        gcc-aarch64-linux-gnu libc6-dev-arm64-cross >/dev/null
fi
for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
    cargo "+$msrv" check --all-targets --all-features --target "$target" --quiet
    echo "msrv: Rust $msrv checks the crates for $target (all targets, all features)"
done
