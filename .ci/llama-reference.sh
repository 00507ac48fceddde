#!/usr/bin/env bash
# Writes the independent float64 reference that tests/llama.rs compares
# blockq's SmolLM2 forward pass with: runs tests/llama_reference.py (numpy,
# llama.cpp's gguf 0.19.0 package, regex) on the model .ci/fetch-models.sh
# fetched, into <model>.reference.bin (or $BLOCKQ_LLAMA_REFERENCE).
#
#   .ci/llama-reference.sh
#
# Installs the Python packages with pip into a virtual environment under the
# model cache (or, where python3 has no venv module, into a --target
# directory). A no-op when the output is newer than the script and the model.
# Without the model it prints SKIPPED (the tests skip too). Without pip or
# network it prints SKIPPED and writes <output>.skipped, its reason, which lets
# the test skip under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${BLOCKQ_MODELS:-$HOME/.cache/blockq-models}
model=${BLOCKQ_SMOLLM2_GGUF:-$dir/SmolLM2-135M-Instruct.Q4_1.gguf}
out=${BLOCKQ_LLAMA_REFERENCE:-$model.reference.bin}
script=tests/llama_reference.py
packages=(gguf==0.19.0 numpy regex)

if [ ! -f "$model" ]; then
    echo "SKIPPED: llama reference: no model at $model"
    exit 0
fi
if [ -f "$out" ] && [ "$out" -nt "$script" ] && [ "$out" -nt "$model" ]; then
    rm -f "$out.skipped"
    echo "llama-reference: $out (present)"
    exit 0
fi

skip() {
    echo "SKIPPED: llama reference: $1"
    echo "$1" >"$out.skipped"
    exit 0
}

t0=$SECONDS
pydir=$dir/.python-reference
python=()
if python3 -m venv "$pydir/venv" >/dev/null 2>&1; then
    "$pydir/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "${packages[@]}" || skip "pip install ${packages[*]} failed"
    python=("$pydir/venv/bin/python")
elif python3 -m pip --version >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check --upgrade \
        --target "$pydir/site" "${packages[@]}" || skip "pip install ${packages[*]} failed"
    python=(env PYTHONPATH="$pydir/site" python3)
else
    skip "neither python3 -m venv nor pip is available"
fi
"${python[@]}" "$script" "$model" "$out.tmp"
mv "$out.tmp" "$out"
rm -f "$out.skipped"
echo "llama-reference: $out (made in $((SECONDS - t0)) s)"
