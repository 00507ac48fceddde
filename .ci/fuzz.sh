#!/usr/bin/env bash
# Bounded differential fuzzing (see README "Fuzzing").
#
#   .ci/fuzz.sh [SECONDS [TARGET...]]
#
# Installs cargo-fuzz if missing, builds every target once (AddressSanitizer,
# optimized, debug assertions and overflow checks on), then runs each TARGET
# (default: all) for SECONDS (default: $FUZZ_SECONDS or 30) from the committed
# seeds in fuzz/corpus/<target>; new inputs go to fuzz/work/<target>
# (git-ignored, kept between local runs). Prints libFuzzer's final coverage and
# execution numbers per target. Exits non-zero if any target finds a crash,
# after printing the crashing input and the fuzzer's report.
#
# FUZZ_SANITIZER=none builds without AddressSanitizer (where its runtime is
# missing). Stable rustc accepts cargo-fuzz's -Z flags through RUSTC_BOOTSTRAP.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-${FUZZ_SECONDS:-30}}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(quantize matmul gguf_bytes forward_into gguf_parse)
sanitizer=${FUZZ_SANITIZER:-address}
export RUSTC_BOOTSTRAP=1
flags=(--release --debug-assertions --sanitizer "$sanitizer")

t0=$SECONDS
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi
t1=$SECONDS
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo fuzz build "${flags[@]}"
t2=$SECONDS
echo "fuzz: cargo-fuzz install $((t1 - t0)) s, build $((t2 - t1)) s (sanitizer: $sanitizer)"

failed=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/work/$t"
    log="fuzz/work/$t.log"
    echo "fuzz: $t for $secs s"
    set +e
    cargo fuzz run "${flags[@]}" "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -timeout=20 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    if [ $rc -eq 0 ]; then
        # Final line "#N DONE cov: .. ft: .. corp: .. exec/s: .." and the stats.
        grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 | sed "s/^/fuzz: $t: /"
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|slowest_unit_time_sec|peak_rss_mb)' "$log" |
            sed "s/^/fuzz: $t: /"
    else
        failed+=("$t")
        echo "fuzz: $t FAILED (exit $rc); the finding (full log: $log):"
        grep -E -A4 'panicked at|ERROR: |^SUMMARY: ' "$log" | grep -v -E '^ +(#?[0-9]+:? | *at )' | sed -n 1,40p
        # libFuzzer names the input it saved: "Test unit written to <file>".
        for a in $(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log"); do
            [ -f "$a" ] || continue
            echo "fuzz: $t: input $a ($(wc -c <"$a") bytes), base64: $(base64 -w0 "$a")"
            od -A x -t x1 "$a" | sed -n 1,32p
        done
    fi
done
echo "fuzz: total $((SECONDS - t0)) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FINDINGS in: ${failed[*]} (reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>)"
    exit 1
fi
