#!/usr/bin/env bash
# Cross-builds blockq for aarch64 and runs its lib + integration tests under
# qemu-user, once per emulated CPU, so every aarch64 kernel level runs and the
# dispatch falls back correctly where a level is missing:
#   cortex-a53  -> neon
#   neoverse-n1 -> neon, dotprod
#   max         -> neon, dotprod, i8mm
# Needs an x86-64 Debian bookworm host (apt). Uses Debian's rustc-web, which has
# an aarch64 std package; the binaries are linked statically because threaded
# dynamically linked programs hang under this qemu-user.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
PKGS=(rustc-web rust-web-clippy libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu
    libc6-dev-arm64-cross qemu-user)

step() { printf '\n--- aarch64: %s (%ss)\n' "$1" "$SECONDS"; }

step "toolchain"
if [ "$(uname -m)" != x86_64 ] || ! command -v apt-get >/dev/null; then
    echo "aarch64.sh: needs an x86-64 Debian host with apt-get" >&2
    exit 1
fi
SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    dpkg --print-foreign-architectures | grep -qx arm64 || "${SUDO[@]}" dpkg --add-architecture arm64
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
export CARGO_TARGET_DIR="$PWD/target/aarch64"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
"$RUSTC" --version
qemu-aarch64 --version | sed -n 1p

step "clippy (aarch64)"
# Debian's cargo-clippy, so that its clippy-driver matches /usr/bin/rustc.
/usr/bin/cargo-clippy clippy --release --target "$TARGET" --all-targets -- -D warnings

step "build tests (aarch64)"
cargo test --release --target "$TARGET" --lib --tests --no-run

step "no SIMD intrinsic called out of line from kernel code (aarch64)"
OBJDUMP=aarch64-linux-gnu-objdump bash .ci/intrinsic-calls.sh --target "$TARGET" --test isa_equivalence

for spec in cortex-a53:scalar,neon neoverse-n1:scalar,neon,dotprod \
    max:scalar,neon,dotprod,i8mm; do
    cpu=${spec%%:*}
    expect=${spec#*:}
    step "tests under QEMU_CPU=$cpu"
    log=$(mktemp)
    # tests/llama.rs: only the greedy-answer test runs here (the whole model
    # on this level's kernels, ~25 token steps); its bit-identity test (a
    # dozen scalar runs of the model) and its reference comparison (62
    # positions of logits) would take minutes under QEMU.
    if ! QEMU_CPU=$cpu BLOCKQ_EXPECT_ISAS=$expect \
        cargo test --release --target "$TARGET" --lib --tests -- --nocapture \
        --skip prefill_equals_token_by_token --skip reference_comparison >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "aarch64.sh: tests FAILED under QEMU_CPU=$cpu (expected ISAs: $expect)" >&2
        exit 1
    fi
    grep -oE 'test result: .* filtered out' "$log" || true
    names() { { grep -oE "isa [a-z0-9]+: $1" "$log" || true; } | awk '{print $2}' | tr -d : | sort -u | xargs; }
    ran=$(names '[0-9]+ layer cases equal to scalar')
    skipped=$(names SKIPPED)
    echo "QEMU_CPU=$cpu: ran [$ran]; SKIPPED [$skipped]"
    want=$(echo "$expect" | tr , '\n' | grep -vx scalar | sort | xargs)
    if [ "$ran" != "$want" ]; then
        echo "aarch64.sh: QEMU_CPU=$cpu ran [$ran], expected [$want]" >&2
        exit 1
    fi
    rm -f "$log"
done

step "done"
