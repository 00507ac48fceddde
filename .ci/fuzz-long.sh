#!/usr/bin/env bash
# Long fuzzing run of one target, for use by hand:
#
#   .ci/fuzz-long.sh TARGET SECONDS      e.g. .ci/fuzz-long.sh matmul 1200
#
# Same build and checks as CI's .ci/fuzz.sh; the corpus grown in
# fuzz/work/TARGET is kept, so successive runs continue where the last one
# stopped. Prints executions, exec/s and coverage (libFuzzer's cov:/ft:) at the
# end; exits non-zero on a finding, with the crashing input.
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 TARGET SECONDS (targets: quantize matmul gguf_bytes forward_into)" >&2
    exit 2
fi
exec "$(dirname "$0")/fuzz.sh" "$2" "$1"
