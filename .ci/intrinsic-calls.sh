#!/usr/bin/env bash
# Fails when code of blockq-kernels calls a SIMD intrinsic out of line.
#
# An intrinsic is a `#[target_feature]` function: it is inlined only into
# code compiled with those features. A closure or helper that does not carry
# the kernel's features (e.g. an `array::from_fn` closure too large to be
# inlined first) keeps every intrinsic in it as a call: the results stay
# bit-exact, so no equivalence test notices, but the kernel runs tens of
# times slower. This scans the disassembly of release binaries instead.
#
# usage: .ci/intrinsic-calls.sh [CARGO TEST ARGS...]
#   builds `cargo test --release --no-run ARGS` (default: --test
#   isa_equivalence, which links every kernel) and scans its executables;
#   OBJDUMP=... for another target (e.g. aarch64-linux-gnu-objdump).
set -euo pipefail
cd "$(dirname "$0")/.."

objdump=${OBJDUMP:-objdump}
if ! command -v "$objdump" >/dev/null && [ "$objdump" = objdump ] && command -v apt-get >/dev/null; then
    SUDO=()
    [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq binutils >/dev/null
fi
[ $# -gt 0 ] || set -- --test isa_equivalence
mapfile -t bins < <(cargo test --release --no-run --message-format=json "$@" |
    grep -oE '"executable":"[^"]+"' | cut -d'"' -f4)
[ ${#bins[@]} -gt 0 ] || { echo "intrinsic calls: no executable built" >&2; exit 1; }

addr2line=${objdump%objdump}addr2line
# Allowed: `_xgetbv`, a one-off call of CPU feature detection.
allow='::_xgetbv>'

status=0
for bin in "${bins[@]}"; do
    asm=$("$objdump" -d --no-show-raw-insn -C "$bin")
    # Captured, not piped into `grep -q`: under pipefail, grep quitting at
    # the first match can make objdump fail with SIGPIPE.
    sections=$("$objdump" -h "$bin")
    kernels=$(grep -c '^[0-9a-f]* <[^>]*blockq_kernels::' <<<"$asm" || true)
    # Calls are `call` (x86-64) or `bl` (aarch64) to `<core::core_arch::...>`.
    # A closure inlined into core's array or iterator code sits in a function
    # named after core, so each call site is traced back through the debug
    # info (release profile: debug = 1) to its inlined frames; it counts when
    # one of them is blockq-kernels code. Other crates (test dependencies)
    # may have such calls of their own.
    sites=$(awk -v allow="$allow" '
        $2 ~ /^(call|callq|bl)$/ && /<core::core_arch::/ && index($0, allow) == 0 {
            a = $1; sub(/:$/, "", a); print "0x" a, substr($0, index($0, "<"))
        }
    ' <<<"$asm")
    found=""
    if [ -n "$sites" ]; then
        found=$(cut -d' ' -f1 <<<"$sites" | "$addr2line" -a -f -C -i -e "$bin" | awk -v sites="$sites" '
            function key(a) { sub(/^0x0*/, "", a); return a }
            BEGIN {
                n = split(sites, line, "\n")
                for (i = 1; i <= n; i++) {
                    sp = index(line[i], " ")
                    target[key(substr(line[i], 1, sp - 1))] = substr(line[i], sp + 1)
                }
            }
            /^0x[0-9a-f]+$/ { addr = key($0); hit = 0; next }
            !hit && /^blockq_kernels::/ { print $0 "  ->  " target[addr]; hit = 1 }
        ' | sort | uniq -c)
    fi
    if [ "$kernels" -eq 0 ]; then
        echo "intrinsic calls: $bin has no blockq_kernels functions (wrong binary?)" >&2
        status=1
    elif ! grep -q '\.debug_line' <<<"$sections"; then
        echo "intrinsic calls: $bin has no line tables to trace calls (profile.release debug?)" >&2
        status=1
    elif [ -n "$found" ]; then
        echo "intrinsic calls: $bin: SIMD intrinsics called out of line from kernel code:" >&2
        echo "$found" >&2
        status=1
    else
        n=$(grep -c . <<<"$sites" || true)
        echo "intrinsic calls: $bin: none from kernel code ($kernels blockq_kernels functions; $n out-of-line intrinsic calls elsewhere)"
    fi
done
exit $status
