#!/usr/bin/env bash
# Runs tests/small_shapes.rs under Miri, which checks the unsafe code it
# executes (the driver, the scalar, AVX2 and AVX-VNNI kernels) for undefined
# behaviour: out-of-bounds or misaligned loads and stores, reads of
# uninitialized memory, invalid values. The formats run in two parallel
# shards; the scalar kernel, which Miri interprets far more slowly than it
# emulates the SIMD intrinsics, runs at batch 1 (tests/small_shapes.rs).
#
# - Pinned nightly (Miri ships only with nightly), fetched by rustup; where it
#   cannot be fetched this says SKIPPED instead of passing silently.
# - The emulated CPU has the features given at compile time. Miri has no
#   512-bit intrinsics, so AVX-512 is left out (those levels print SKIPPED);
#   `avx512vnni,avx512vl` are on only because Miri checks the AVX-VNNI
#   `vpdpbusd` (one LLVM intrinsic for both encodings) against them.
# - No aliasing model (`-Zmiri-disable-stacked-borrows`): rayon's
#   crossbeam-epoch fails Stacked Borrows, and Tree Borrows makes the packing
#   of the layers 5-10x slower; bounds, alignment and initialization are
#   still checked. `-Zmiri-ignore-leaks`: rayon's pool threads are never joined.
set -euo pipefail
cd "$(dirname "$0")/.."

toolchain=nightly-2026-05-20
if ! command -v rustup >/dev/null ||
    ! timeout 300 rustup toolchain install "$toolchain" --profile minimal \
        --component miri --component rust-src >/dev/null 2>&1; then
    echo "miri: SKIPPED (rustup could not install $toolchain with Miri here)"
    exit 0
fi
export MIRIFLAGS="-Zmiri-disable-stacked-borrows -Zmiri-ignore-leaks -Zmiri-env-forward=BLOCKQ_TEST_SHARD"
export RUSTFLAGS="-Ctarget-feature=+avx2,+fma,+f16c,+avxvnni,+avx512vnni,+avx512vl"
export CARGO_TARGET_DIR=target/miri-ci
mkdir -p "$CARGO_TARGET_DIR"
# Build once, then run the formats in two shards at once (Miri interprets
# on one host thread; the machine has two cores).
if ! cargo "+$toolchain" miri test --test small_shapes --no-run >"$CARGO_TARGET_DIR/build.log" 2>&1; then
    tail -n 80 "$CARGO_TARGET_DIR/build.log"
    echo "miri: FAILED to build (full output in $CARGO_TARGET_DIR/build.log)"
    exit 1
fi
pids=()
for shard in 0 1; do
    BLOCKQ_TEST_SHARD=$shard/2 cargo "+$toolchain" miri test --test small_shapes -- --nocapture \
        >"$CARGO_TARGET_DIR/miri-$shard.log" 2>&1 &
    pids+=($!)
done
failed=0
for shard in 0 1; do
    log=$CARGO_TARGET_DIR/miri-$shard.log
    if ! wait "${pids[$shard]}"; then
        tail -n 80 "$log"
        echo "miri: shard $shard/2 FAILED (full output in $log)"
        failed=1
    fi
    grep -oE '(isa [a-z0-9]+: .*|test result: .*)' "$log" | sed "s|^|shard $shard/2: |"
done
exit $failed
