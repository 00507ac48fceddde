"""Writes tests/data/format_vectors.bin: fixed quantization test vectors for
Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and BF16, made with gguf-py (llama.cpp's Python
GGUF package, an implementation independent of blockq), for
tests/format_vectors.rs.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install gguf==0.19.0
    /tmp/venv/bin/python tests/data/make_format_vectors.py

Each record is one named row (a multiple of 32 f32 values) of one format: the
input, its quantized bytes (GGUF block bytes) and gguf-py's dequantization of
those bytes. Cases per format: random normal rows at three scales, exact
rounding ties of the format's rounding rule (and the f32 values next to them),
zero blocks (+0.0, -0.0, mixed), all-equal blocks, subnormal inputs, blocks
whose largest magnitude is so small that 1/d overflows f32 (on both sides of
that threshold), values whose f16 scale (or Q4_1/Q5_1 minimum) overflows,
values near f16's largest finite value, the sign of the largest magnitude and
ties between magnitudes of both signs. BF16 also gets NaNs (quiet and
signalling bit patterns), infinities, subnormals and values rounding to
infinity. The block formats get no NaN or infinite inputs.

Every record is also computed by a pure-Python port of llama.cpp's C
reference (quantize_row_*_ref and dequantize_row_* in ggml-quants.c,
ggml_compute_fp32_to_bf16 in ggml-impl.h), with f32 arithmetic and the C
float-to-int8/uint8 conversion of x86-64 (cvttss2si: NaN or out of int32 range
gives INT_MIN, whose low byte is 0), and the script asserts that gguf-py's
bytes and values equal the port's. Run it on x86-64: gguf-py converts with
numpy casts, whose result for NaN and infinities is the platform's (on
x86-64 the same low byte 0 as the C reference; where it is not, the
assertions fail).

The quantized bytes stored are the reference's bytes. gguf-py picks another
signed zero than the C loops for the f16 scale (or minimum) of some blocks
of zeros (see signed_zero_difference below); for those records (printed by
the script) the reference's bytes are stored, and the script asserts that
gguf-py's differ only there, in the sign bit of an f16 zero. The dequantized
values are gguf-py's dequantization of the stored bytes.

Layout of format_vectors.bin (all integers and floats little-endian):

    magic    4 bytes  b"BQFV"
    version  u32      1
    count    u32      number of records
    count records, each:
      u8 len, len ASCII bytes   format name as ggml spells it:
                                "Q8_0" "Q4_0" "Q4_1" "Q5_0" "Q5_1" "BF16"
      u8 len, len ASCII bytes   case name
      u32 n                     number of values (a multiple of 32)
      n f32                     input
      u32 nbytes, nbytes bytes  quantized row (GGUF blocks, 2 bytes per
                                value for BF16)
      n f32                     dequantization of those bytes
"""

import math
import os
import struct

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "format_vectors.bin")
QK = 32
F = np.float32
FORMATS = ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "BF16")
FLT_MAX = np.finfo(np.float32).max

BLOCK_BYTES = {"Q8_0": 34, "Q4_0": 18, "Q4_1": 20, "Q5_0": 22, "Q5_1": 24}


def signed_zero_difference(fmt, x, ours, theirs):
    """Asserts that gguf-py's bytes differ from the reference's only where
    they may: in the sign of an f16 zero scale (d, or Q4_1/Q5_1's min m) of a
    block of signed zeros. Q4_0/Q5_0: the C loop starts from max = +0.0 and
    replaces it only on a strictly larger |v|, so an all-zero block gets
    d = +0.0/-8 = -0.0 (-16 for Q5_0); gguf-py takes the block's first
    element, so an all-zero block starting with -0.0 gets d = +0.0.
    Q4_1/Q5_1: the C loop keeps the first of equal minima (maxima); numpy's
    min/max reductions may return either signed zero (which one depends on
    numpy's SIMD code, so this is checked per block, not per case)."""
    size = BLOCK_BYTES[fmt]
    fields = (1,) if fmt in ("Q4_0", "Q5_0") else (1, 3)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a == b:
            continue
        blk, off = divmod(i, size)
        xb = x[blk * QK : (blk + 1) * QK]
        assert off in fields and {a, b} == {0x00, 0x80}, (fmt, i, a, b)
        assert ours[i - 1] == theirs[i - 1] == 0, (fmt, i)
        assert np.all(xb[np.signbit(xb) != np.signbit(xb[0])] == 0), (fmt, i)
        if fmt in ("Q4_0", "Q5_0"):
            assert np.all(xb == 0) and np.signbit(xb[0]) and a == 0x80, (fmt, i)
        else:
            zeros = xb[xb == 0]
            assert np.any(np.signbit(zeros)) and not np.all(np.signbit(zeros)), (fmt, i)


# ---------------------------------------------------------------------------
# Pure-Python port of the C reference (f32 arithmetic on numpy scalars).


def c_f2i32(f):
    """C float -> int on x86-64 (cvttss2si): truncation; NaN or out of
    int32 range gives INT_MIN."""
    f = float(f)
    if math.isnan(f) or not (-(2.0**31) <= f < 2.0**31):
        return -(2**31)
    return math.trunc(f)


def c_i8(f):
    """(int8_t)f: the low byte of the int32 conversion, signed."""
    v = c_f2i32(f) & 0xFF
    return v - 256 if v >= 128 else v


def c_u8(f):
    """(uint8_t)f: the low byte of the int32 conversion."""
    return c_f2i32(f) & 0xFF


def c_roundf(f):
    """roundf: half away from zero (infinities and NaN unchanged)."""
    f = float(f)
    if not math.isfinite(f):
        return F(f)
    t = math.trunc(f)
    if abs(f - t) >= 0.5:
        t += 1 if f > 0 else -1
    return F(t)


def f16_bits(f):
    """GGML_FP32_TO_FP16: round to nearest even (f32 -> f64 is exact, so
    rounding the f64 once is the same)."""
    f = float(f)
    try:
        return struct.unpack("<H", struct.pack("<e", f))[0]
    except OverflowError:
        return 0xFC00 if f < 0 else 0x7C00


def f16_to_f32(bits):
    return F(struct.unpack("<e", struct.pack("<H", bits))[0])


def blocks_of(x):
    return [x[i : i + QK] for i in range(0, len(x), QK)]


def ref_q8_0(x):
    out = bytearray()
    for b in blocks_of(x):
        amax = F(0)
        for v in b:
            av = abs(v)
            amax = amax if amax > av else av  # MAX(amax, fabsf(v))
        d = amax / F(127)
        i_d = F(1) / d if d != 0 else F(0)
        out += struct.pack("<H", f16_bits(d))
        out += bytes(c_i8(c_roundf(v * i_d)) & 0xFF for v in b)
    return bytes(out)


def absmax_signed(b):
    amax, mx = F(0), F(0)
    for v in b:
        if amax < abs(v):
            amax, mx = abs(v), v
    return mx


def min_max(b):
    lo, hi = F(FLT_MAX), F(-FLT_MAX)
    for v in b:
        if v < lo:
            lo = v
        if v > hi:
            hi = v
    return lo, hi


def ref_q4_0(x):
    out = bytearray()
    for b in blocks_of(x):
        d = absmax_signed(b) / F(-8)
        i_d = F(1) / d if d != 0 else F(0)
        out += struct.pack("<H", f16_bits(d))
        for j in range(QK // 2):
            x0 = min(15, c_i8(b[j] * i_d + F(8.5))) & 0xFF
            x1 = min(15, c_i8(b[j + 16] * i_d + F(8.5))) & 0xFF
            out.append((x0 | (x1 << 4)) & 0xFF)
    return bytes(out)


def ref_q4_1(x):
    out = bytearray()
    for b in blocks_of(x):
        lo, hi = min_max(b)
        d = (hi - lo) / F(15)
        i_d = F(1) / d if d != 0 else F(0)
        out += struct.pack("<HH", f16_bits(d), f16_bits(lo))
        for j in range(QK // 2):
            x0 = min(15, c_i8((b[j] - lo) * i_d + F(0.5))) & 0xFF
            x1 = min(15, c_i8((b[j + 16] - lo) * i_d + F(0.5))) & 0xFF
            out.append((x0 | (x1 << 4)) & 0xFF)
    return bytes(out)


def pack5(codes):
    qh, qs = 0, bytearray()
    for j in range(QK // 2):
        x0, x1 = codes[j], codes[j + 16]
        qs.append((x0 & 0x0F) | ((x1 & 0x0F) << 4))
        qh |= ((x0 & 0x10) >> 4) << j
        qh |= ((x1 & 0x10) >> 4) << (j + 16)
    return struct.pack("<I", qh) + bytes(qs)


def ref_q5_0(x):
    out = bytearray()
    for b in blocks_of(x):
        d = absmax_signed(b) / F(-16)
        i_d = F(1) / d if d != 0 else F(0)
        out += struct.pack("<H", f16_bits(d))
        out += pack5([min(31, c_i8(v * i_d + F(16.5))) & 0xFF for v in b])
    return bytes(out)


def ref_q5_1(x):
    out = bytearray()
    for b in blocks_of(x):
        lo, hi = min_max(b)
        d = (hi - lo) / F(31)
        i_d = F(1) / d if d != 0 else F(0)
        out += struct.pack("<HH", f16_bits(d), f16_bits(lo))
        out += pack5([c_u8((v - lo) * i_d + F(0.5)) for v in b])
    return bytes(out)


def ref_bf16(x):
    out = bytearray()
    for u in np.asarray(x, dtype=np.float32).view(np.uint32).tolist():
        if (u & 0x7FFFFFFF) > 0x7F800000:
            h = (u >> 16) | 64  # NaN: forced quiet
        else:
            h = (u + (0x7FFF + ((u >> 16) & 1))) >> 16
        out += struct.pack("<H", h)
    return bytes(out)


def unpack5(qh, qs):
    return [(qs[j % 16] >> (4 * (j // 16)) & 0x0F) | (((qh >> j) & 1) << 4) for j in range(QK)]


def ref_dequant(fmt, data):
    """dequantize_row_* (f32 products; Q4_1/Q5_1 multiply, then add)."""
    out = []
    if fmt == "BF16":
        u = np.frombuffer(data, dtype="<u2").astype(np.uint32) << np.uint32(16)
        return u.view(np.float32)
    size = BLOCK_BYTES[fmt]
    for i in range(0, len(data), size):
        blk = data[i : i + size]
        d = f16_to_f32(struct.unpack_from("<H", blk)[0])
        if fmt == "Q8_0":
            out += [F(c) * d for c in struct.unpack_from("<32b", blk, 2)]
        elif fmt == "Q4_0":
            out += [F((blk[2 + j % 16] >> (4 * (j // 16)) & 0x0F) - 8) * d for j in range(QK)]
        elif fmt == "Q4_1":
            m = f16_to_f32(struct.unpack_from("<H", blk, 2)[0])
            out += [F(blk[4 + j % 16] >> (4 * (j // 16)) & 0x0F) * d + m for j in range(QK)]
        elif fmt == "Q5_0":
            qh = struct.unpack_from("<I", blk, 2)[0]
            out += [F(c - 16) * d for c in unpack5(qh, blk[6:])]
        else:
            m = f16_to_f32(struct.unpack_from("<H", blk, 2)[0])
            qh = struct.unpack_from("<I", blk, 4)[0]
            out += [F(c) * d + m for c in unpack5(qh, blk[8:])]
    return np.array(out, dtype=np.float32)


REF = {
    "Q8_0": ref_q8_0,
    "Q4_0": ref_q4_0,
    "Q4_1": ref_q4_1,
    "Q5_0": ref_q5_0,
    "Q5_1": ref_q5_1,
    "BF16": ref_bf16,
}


# ---------------------------------------------------------------------------
# Cases.

rng = np.random.default_rng(20250301)


def arr(values):
    return np.asarray(values, dtype=np.float32)


def bits(us):
    return np.asarray(us, dtype=np.uint32).view(np.float32)


def block(head, rest):
    """`head` followed by values drawn from `rest` (cycled) to 32 values."""
    head = list(arr(head))
    rest = list(arr(rest))
    return arr(head + [rest[i % len(rest)] for i in range(QK - len(head))])


def near(x, k):
    """x and the k f32 values on either side of it."""
    out, lo, hi = [F(x)], F(x), F(x)
    for _ in range(k):
        lo, hi = np.nextafter(lo, F(-np.inf)), np.nextafter(hi, F(np.inf))
        out = [lo] + out + [hi]
    return out


def ties(scale, lim, ks, offset, exact):
    """Values x with |x| <= lim near the points where f32(f32(x * scale) +
    offset) is exactly `exact(k)`, k in `ks`: for each target, the f32 x found
    and its neighbours. `scale` is the f32 the reference multiplies by."""
    out = []
    for k in ks:
        t = exact(k)
        x = F((t - float(offset)) / float(scale))
        for c in near(x, 6):
            if abs(c) <= lim and F(F(c * scale) + offset) == F(t):
                out += near(c, 1)
                break
    return [v for v in out if abs(v) <= lim]


def rows_from(values, head):
    """Splits `values` into blocks of 32 - len(head), each led by `head`."""
    per = QK - len(head)
    out = []
    for i in range(0, len(values), per):
        chunk = list(values[i : i + per])
        chunk += [F(0)] * (per - len(chunk))
        out += list(arr(head)) + chunk
    return arr(out)


def threshold(divide):
    """Smallest positive f32 a for which 1/divide(a) is finite."""
    lo, hi = 1, 0x7F7FFFFF  # bit patterns: 1/d(lo) overflows, 1/d(hi) does not
    assert not np.isfinite(F(1) / divide(bits([lo])[0]))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if np.isfinite(F(1) / divide(bits([mid])[0])):
            hi = mid
        else:
            lo = mid
    return bits([hi])[0]


def common_cases(fmt):
    """Cases shared by the five block formats."""
    c = {}
    for name, s in (("random_1e-3", 1e-3), ("random_1", 1.0), ("random_1e3", 1e3)):
        c[name] = arr(rng.standard_normal(2 * QK) * s)
    c["zeros"] = arr([0.0] * QK)
    c["zeros_neg"] = arr([-0.0] * QK)
    c["zeros_mixed_pos_first"] = arr([0.0, -0.0] * 16)
    c["zeros_mixed_neg_first"] = arr([-0.0, 0.0] * 16)
    c["zeros_mixed_then_positive"] = arr([-0.0, 0.0] * 8 + [0.0] + list(range(1, 16)))
    c["zeros_one_value"] = block([0.0] * 7 + [0.375], [0.0, -0.0])
    c["equal"] = arr(
        [2.5] * QK + [-2.5] * QK + [7.0] * QK + [-7.0] * QK + [1e-3] * QK + [-3.3e4] * QK
    )
    c["subnormal"] = arr(rng.uniform(-1e-39, 1e-39, 2 * QK))
    c["smallest_subnormal"] = block([1e-45, -1e-45, 0.0], [1e-45, 0.0, -1e-45, -0.0])
    c["tiny_one_1e-39"] = block([0.0] * 5 + [1e-39], [0.0])
    c["tiny_one_neg_1e-39"] = block([0.0] * 5 + [-1e-39], [0.0])
    c["tiny_all_different"] = arr([(i + 1) * 1e-40 * (-1) ** i for i in range(QK)])
    c["tiny_1e-38"] = arr(rng.uniform(-1e-38, 1e-38, QK))
    c["tiny_positive"] = arr(rng.uniform(1e-40, 1e-38, QK))
    # Largest magnitudes on both sides of the point where 1/d overflows.
    divide = {
        "Q8_0": lambda a: a / F(127),
        "Q4_0": lambda a: a / F(-8),
        "Q5_0": lambda a: a / F(-16),
        "Q4_1": lambda a: a / F(15),
        "Q5_1": lambda a: a / F(31),
    }[fmt]
    t = threshold(divide)
    for name, a in (("below", np.nextafter(t, F(0))), ("at", t)):
        frac = arr(rng.uniform(-1, 1, QK - 2))
        c[f"inv_scale_overflow_{name}"] = arr(
            [a] + list(F(a) * frac) + [-a / F(3)]
            if fmt in ("Q8_0", "Q4_0", "Q5_0")
            else [F(0), a] + list(F(a) * abs(frac))
        )
        c[f"inv_scale_overflow_neg_{name}"] = -c[f"inv_scale_overflow_{name}"]
    c["huge_1e6_3e38"] = arr(
        [1e6, -2e6, 1e10, -1e20, 1e30, -3e38, 3e38, FLT_MAX, -FLT_MAX]
        + list(rng.uniform(-1, 1, 23) * 1e6)
        + list(rng.uniform(-1, 1, QK) * 1e7)
        + list(rng.uniform(-1, 1, QK) * 1e20)
        + list(rng.uniform(-1, 1, QK) * 3e38)
    )
    c["huge_flt_max"] = block([FLT_MAX, -FLT_MAX], [FLT_MAX, 1.0, -FLT_MAX, 0.0, 3e38])
    c["huge_positive"] = arr(rng.uniform(1e36, 3e38, QK))
    c["huge_negative"] = arr(-rng.uniform(1e36, 3e38, QK))
    # The largest magnitude decides the scale: its sign and ties in |x|.
    c["max_positive"] = block([0.5, 3.0, -2.0], rng.uniform(-2, 2, 29))
    c["max_negative"] = block([0.5, -3.0, 2.0], rng.uniform(-2, 2, 29))
    c["equal_magnitude_pos_first"] = block([0.5, 3.0, -3.0], rng.uniform(-2, 2, 29))
    c["equal_magnitude_neg_first"] = block([0.5, -3.0, 3.0], rng.uniform(-2, 2, 29))
    c["equal_magnitude_pm"] = arr([1.0, -1.0] * 16 + [-1.0, 1.0] * 16)
    return c


def f16_edge(div, asym):
    """Blocks whose scale is about f16's largest finite value, the f16
    rounding tie above it (65520, rounds to inf) and the f32 values next to
    those: the largest magnitude a = d * div alternates in sign; with `asym`
    (Q4_1/Q5_1) the block spans [0, a] or [-a, 0] instead of [-a, a]."""
    out = []
    for i, d in enumerate(near(F(65504), 1) + near(F(65520), 1)):
        a = F(d * F(div))
        if asym:
            lo, hi = (F(0), a) if i % 2 == 0 else (-a, F(0))
            out += [lo, hi] + list(arr(rng.uniform(lo, hi, QK - 2)))
        else:
            a *= F((-1) ** i)
            out += [a] + list(abs(a) * arr(rng.uniform(-1, 1, QK - 1)))
    return arr(out)


def cases_q8_0():
    c = common_cases("Q8_0")
    # amax 127 * 2^e: d = 2^e, id = 2^-e; x = k + 0.5 lands on a tie.
    for e, step in ((0, 1), (-10, 2), (7, 2)):
        s = F(2.0**e)
        half = [F((k + 0.5) * s) for k in range(0, 127, step)]
        c[f"ties_pow2_{e}"] = rows_from(half + [-h for h in half], [F(127) * s])
    # d = 3: id = 1/3 is inexact; x near the f32 points where x*id is k + 0.5.
    for amax in (381.0, 0.7):
        i_d = F(1) / (F(amax) / F(127))
        tv = ties(i_d, F(amax), range(0, 127, 4), F(0), lambda k: k + 0.5)
        c[f"ties_amax_{amax}"] = rows_from(tv + [-v for v in tv], [F(amax)])
    c["f16_scale_edge"] = f16_edge(127, False)
    return c


def cases_x_0(fmt, half):
    """Q4_0 (half = 8) and Q5_0 (half = 16): code = trunc(x*id + half + 0.5)."""
    c = common_cases(fmt)
    off = F(half + 0.5)
    # max = -half * 2^e: d = 2^e, x*id + half + 0.5 is an integer.
    for e in (0, -12, 5):
        s = F(2.0**e)
        tv = [F((k - half - 0.5) * s) for k in range(1, 2 * half + 1)]
        tv = [v for v in tv if abs(v) < half * s]
        c[f"ties_pow2_{e}"] = rows_from(tv, [F(-half) * s])
        c[f"ties_pow2_{e}_neg_scale"] = rows_from([-v for v in tv], [F(half) * s])
    for mx in (-3.0, 0.9):
        i_d = F(1) / (F(mx) / F(-half))
        tv = ties(i_d, abs(F(mx)), range(2 * half + 1), off, lambda k: float(k))
        c[f"ties_max_{mx}"] = rows_from(tv, [F(mx)])
    c["f16_scale_edge"] = f16_edge(half, False)
    return c


def cases_x_1(fmt, top):
    """Q4_1 (top = 15) and Q5_1 (top = 31): code = trunc((x-min)*id + 0.5)."""
    c = common_cases(fmt)
    # min .. max spanning `top` * 2^e: (x - min)*id + 0.5 is an integer.
    for lo, e in ((0.0, 0), (-7.5, 0), (1.0, -9), (-100.0, 3)):
        s = F(2.0**e)
        mn, mx = F(lo) * s, F(lo + top) * s
        tv = [F((lo + k + 0.5) * s) for k in range(top)]
        c[f"ties_min_{lo}_pow2_{e}"] = rows_from(tv, [mn, mx])
    for mn, mx in ((-1.0, 2.0), (0.3, 0.71)):
        mn, mx = F(mn), F(mx)
        i_d = F(1) / ((mx - mn) / F(top))
        out = []
        for k in range(top + 1):
            for cnd in near(F(mn + F((k - 0.5) / float(i_d))), 6):
                if mn <= cnd <= mx and F(F((cnd - mn) * i_d) + F(0.5)) == F(k):
                    out += [v for v in near(cnd, 1) if mn <= v <= mx]
                    break
        c[f"ties_min_{mn}_max_{mx}"] = rows_from(out, [mn, mx])
    c["f16_scale_edge"] = f16_edge(top, True)
    # The minimum alone overflows f16 (the scale does not), and near it.
    c["f16_min_edge"] = arr(
        [mn + F(v) for mn in (F(65504), F(65519), F(65520), F(-65520), F(-1e6)) for v in range(QK)]
    )
    c["min_max_overflow"] = block([-3e38, 3e38], [0.0, 1e38, -1e38, 2.9e38])
    return c


def pad_u32(us, fill=0):
    """Pads a list of f32 bit patterns to a multiple of 32 with `fill`."""
    us = list(us)
    return us + [fill] * (-len(us) % QK)


def cases_bf16():
    c = {}
    for name, s in (("random_1e-3", 1e-3), ("random_1", 1.0), ("random_1e3", 1e3)):
        c[name] = arr(rng.standard_normal(2 * QK) * s)
    half_even = [0x3F808000, 0x3F8A8000, 0x40408000, 0x00808000, 0x7F008000]
    half_odd = [0x3F818000, 0x3F8B8000, 0x40418000, 0x00818000, 0x7F018000]
    around = [u + dx for u in half_even + half_odd for dx in (-1, 1)]
    c["ties_even"] = bits(pad_u32(half_even + [u | 0x80000000 for u in half_even]))
    c["ties_odd"] = bits(pad_u32(half_odd + [u | 0x80000000 for u in half_odd]))
    c["ties_neighbours"] = bits(pad_u32(around + [u | 0x80000000 for u in around]))
    c["carry_into_exponent"] = bits(
        pad_u32([0x3FFF8000, 0x3FFFFFFF, 0x3FFF7FFF, 0x007FFFFF, 0x007F8000, 0xBFFF8000])
    )
    c["nan"] = bits(
        pad_u32(
            [
                0x7FC00000, 0x7FC00001, 0x7FC08000, 0x7FFF8000, 0x7FFFFFFF, 0x7FE00000,
                0x7F800001, 0x7F808000, 0x7F810000, 0x7FBFFFFF, 0x7FA00000, 0x7F80FFFF,
                0xFFC00000, 0xFFC00001, 0xFF800001, 0xFFBFFFFF, 0xFFFFFFFF, 0xFF808000,
            ],
            fill=0x3F800000,
        )
    )
    c["inf"] = bits(pad_u32([0x7F800000, 0xFF800000, 0x7F800000, 0x3F800000, 0xFF800000]))
    c["subnormal"] = bits(
        pad_u32(
            [
                0x00000001, 0x00007FFF, 0x00008000, 0x00008001, 0x00018000, 0x00017FFF,
                0x00010000, 0x007FFFFF, 0x00400000, 0x80000001, 0x80008000, 0x80018000,
                0x807FFFFF, 0x00000000, 0x80000000,
            ]
        )
    )
    c["subnormal_random"] = arr(rng.uniform(-1.2e-38, 1.2e-38, QK))
    c["to_inf"] = bits(
        pad_u32(
            [
                0x7F7F8000, 0x7F7FFFFF, 0x7F7F7FFF, 0x7F7F8001, 0x7F7E8000, 0x7F7EFFFF,
                0xFF7F8000, 0xFF7FFFFF, 0xFF7F7FFF, 0xFF7E8000,
            ]
        )
    )
    c["zeros_signed"] = arr([0.0, -0.0] * 16)
    large = [1e6, -2e6, 1e10, -1e20, 1e30, -3e38, 3e38, 65504, 65520, -65520]
    c["large"] = arr(large + [1.5e38] * 22)
    return c


CASES = {
    "Q8_0": cases_q8_0,
    "Q4_0": lambda: cases_x_0("Q4_0", 8),
    "Q4_1": lambda: cases_x_1("Q4_1", 15),
    "Q5_0": lambda: cases_x_0("Q5_0", 16),
    "Q5_1": lambda: cases_x_1("Q5_1", 31),
    "BF16": cases_bf16,
}


def same_f32(a, b):
    """Bitwise equal, except that every NaN equals every NaN."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a.shape == b.shape and bool(
        np.all((a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b)))
    )


def build():
    records, diverged = [], set()
    with np.errstate(all="ignore"):
        for fmt in FORMATS:
            qtype = T[fmt]
            for case, x in CASES[fmt]().items():
                x = np.ascontiguousarray(x, dtype=np.float32)
                assert x.size % QK == 0 and x.size > 0, (fmt, case, x.size)
                assert len(case) < 256
                if fmt != "BF16":
                    assert np.all(np.isfinite(x)), (fmt, case)
                ours = REF[fmt](list(x))
                theirs = quants.quantize(x.reshape(1, -1), qtype).tobytes()
                assert len(ours) == len(theirs), (fmt, case)
                if ours != theirs:
                    diverged.add((fmt, case))
                    signed_zero_difference(fmt, x, ours, theirs)
                deq = quants.dequantize(np.frombuffer(ours, dtype=np.uint8).reshape(1, -1), qtype)
                deq = np.ascontiguousarray(deq, dtype=np.float32).reshape(-1)
                assert deq.size == x.size, (fmt, case)
                assert same_f32(deq, ref_dequant(fmt, ours)), (fmt, case)
                records.append((fmt, case, x, ours, deq))
    # The first-element rule of gguf-py's Q4_0/Q5_0 makes these differ always.
    for fmt in ("Q4_0", "Q5_0"):
        assert {(fmt, "zeros_neg"), (fmt, "zeros_mixed_neg_first")} <= diverged
    return records, diverged


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


records, diverged = build()
size = write(records)
for fmt, case in sorted(diverged):
    print(f"{fmt} {case}: stored the reference's bytes (gguf-py's zero scale has the other sign)")
for fmt in FORMATS:
    print(fmt, sum(r[0] == fmt for r in records), "records")
print(OUT, size, "bytes")
