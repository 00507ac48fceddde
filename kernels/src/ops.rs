//! The row operations of a transformer around its linear layers: RMSNorm,
//! SwiGLU, and attention of query heads over a KV cache.
//!
//! A model whose logits must not depend on the batch split, the thread count
//! or the CPU needs every operation to be a fixed function of its row, as
//! blockq's layers are for the matrix products. Each function here is one
//! fixed sequence of f32 operations, written down below; the code is plain
//! Rust that the compiler vectorizes, run in a clone of the load-time loops
//! ([`crate::load::Level`]). Rust never contracts or
//! reassociates float operations, so every clone gives the bits of the
//! baseline build (tested on every level this CPU runs).
//!
//! # Definitions
//! Every `+`, `*`, `/` and `sqrt` below is one correctly rounded f32
//! operation, in the order written; `fma(a, b, c)` is `a * b + c` rounded
//! once (an FMA instruction; the C library's `fmaf` on x86-64 CPUs without
//! FMA, which is exact but slow).
//! - [`dot`]`(a, b)`: sixteen lanes, each starting at +0.0, `s_l = fma(a_i,
//!   b_i, s_l)` for `i ≡ l (mod 16)` in increasing `i`; then the tree `t_l =
//!   s_l + s_{l+8}` (`l < 8`), `u_l = t_l + t_{l+4}` (`l < 4`), result `(u_0 +
//!   u_2) + (u_1 + u_3)`.
//! - [`exp`]`(x)`: `n = x·log2(e)` rounded to an integer (ties to even), `r =
//!   (x - n·ln2_hi) - n·ln2_lo`, the degree-7 Taylor polynomial of `e^r` by
//!   Horner's rule, times `2^⌊n/2⌋` (exact) and then `2^(n - ⌊n/2⌋)` (one
//!   rounding, so results below 2^-126 round once); `x` is first clamped to
//!   `[-105, 89]` and NaN stays NaN. Within 2 ulp of `e^x` (tested).
//! - [`rms_norm`]: per row of `n` values, `scale = 1 / sqrt(dot(x, x) / n +
//!   eps)`, then `y_i = x_i * scale * g_i`.
//! - [`silu_mul`]: `g_i = g_i / (1 + exp(-g_i)) * u_i`.
//! - [`attend`]: `s_j = dot(q, k_j) * scale` for each position `j`; `m` =
//!   the largest `s_j` that is not NaN (`-inf` if there is none; +0.0 ranks
//!   above -0.0); `p_j = exp(s_j - m)`; `sum = Σ p_j` in the sixteen lanes
//!   (`j mod 16`) and the tree of `dot`; `p_j = p_j / sum`; each output `o_c
//!   = fma(p_j, v_{j,c}, o_c)` over `j` in increasing order from +0.0. Keys
//!   and values held as f16 ([`CacheValue`]) are first widened to f32
//!   (exact). [`attend_group`] is [`attend`] for each head of a group,
//!   [`attend_heads`] [`attend_group`] for each KV head of a row.
//!
//! # Attention's memory order
//! A decode step reads every cached key and value once per query head.
//! [`attend_heads`] runs every query head of a position (all KV heads) over
//! blocks of 32 positions with every head inside the block, so the cache
//! comes from memory once, as whole rows in order (one stream, not one
//! strided stream per KV head), and from L1 for the other heads. The next
//! block is asked for while a block is computed, each head asking for its
//! share of the rows so that the requests spread over the block's
//! arithmetic. Each head's arithmetic is unchanged (only independent
//! computations are reordered), so every head gets its bits alone.

use crate::formats::FloatElem;
use crate::load::{Level, On, Task};
use std::sync::OnceLock;

/// Where [`attend`] runs: the AVX2 clone when the CPU has it, even on
/// AVX-512 CPUs. Its loops are short chains of FMAs and lane trees; with
/// 512-bit vectors they ran 1.1-1.7x slower on this project's Xeon (same
/// bits either way). RMSNorm and SwiGLU (divisions) gain from them.
fn attend_on() -> On {
    static ON: OnceLock<On> = OnceLock::new();
    *ON.get_or_init(|| On::checked(Level::Avx2).unwrap_or(On::Dispatched))
}

/// The sixteen-lane dot product of the module docs (`a` and `b` of equal
/// length; extra values of the longer one are ignored).
#[inline(always)]
fn dot16(a: &[f32], b: &[f32]) -> f32 {
    #[inline(always)]
    fn lanes(acc: &mut [f32; 16], x: &[f32; 16], y: &[f32; 16]) {
        for l in 0..16 {
            acc[l] = x[l].mul_add(y[l], acc[l]);
        }
    }
    let n = a.len().min(b.len());
    let (ca, cb) = (a[..n].chunks_exact(16), b[..n].chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let mut acc = [0.0f32; 16];
    for (x, y) in ca.zip(cb) {
        // Fixed-size views: no bounds checks, the lanes stay in one register.
        lanes(&mut acc, x.try_into().unwrap(), y.try_into().unwrap());
    }
    if !ra.is_empty() {
        // The tail as a whole step padded with +0.0: the padded lanes add
        // +0.0 * +0.0 = +0.0, which leaves them unchanged (a lane that
        // starts at +0.0 is never -0.0 under round-to-nearest).
        let (mut x, mut y) = ([0.0f32; 16], [0.0f32; 16]);
        x[..ra.len()].copy_from_slice(ra);
        y[..rb.len()].copy_from_slice(rb);
        lanes(&mut acc, &x, &y);
    }
    tree16(acc)
}

/// `s_j = dot16(q, k_j) * scale` for positions `j = 0, 4, 8, ...` four at
/// a time, `q.len() == 16 * C`; returns how many positions it did (a
/// multiple of 4). The four chains interleaved per value, with the length
/// known at compile time, is the form LLVM keeps in registers (three times
/// faster than one position at a time, whose chains do not overlap; other
/// spellings get tangled by its SLP vectorizer, as did a form with several
/// heads per pass, 4x slower). `ahead`: the rows one block ahead to ask
/// for on the way.
#[inline(always)]
fn scores_by_4<const C: usize>(
    q: &[f32],
    keys: &[f32],
    stride: usize,
    scale: f32,
    scores: &mut [f32],
    ahead: Ahead<'_>,
) -> usize {
    let q = &q[..16 * C];
    let mut j = 0;
    while j + 4 <= scores.len() {
        for r in j..j + 4 {
            ahead.row(r);
        }
        let k0 = &keys[j * stride..][..16 * C];
        let k1 = &keys[(j + 1) * stride..][..16 * C];
        let k2 = &keys[(j + 2) * stride..][..16 * C];
        let k3 = &keys[(j + 3) * stride..][..16 * C];
        let mut a = [[0.0f32; 16]; 4];
        let [a0, a1, a2, a3] = &mut a;
        for c in 0..C {
            for l in 0..16 {
                let i = 16 * c + l;
                a0[l] = q[i].mul_add(k0[i], a0[l]);
                a1[l] = q[i].mul_add(k1[i], a1[l]);
                a2[l] = q[i].mul_add(k2[i], a2[l]);
                a3[l] = q[i].mul_add(k3[i], a3[l]);
            }
        }
        scores[j] = tree16(a[0]) * scale;
        scores[j + 1] = tree16(a[1]) * scale;
        scores[j + 2] = tree16(a[2]) * scale;
        scores[j + 3] = tree16(a[3]) * scale;
        j += 4;
    }
    j
}

/// `Σ x_i` in sixteen lanes and the tree of [`dot16`].
#[inline(always)]
fn sum16(x: &[f32]) -> f32 {
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    let mut acc = [0.0f32; 16];
    for c in chunks {
        let c: &[f32; 16] = c.try_into().unwrap();
        for l in 0..16 {
            acc[l] += c[l];
        }
    }
    // The tail padded with +0.0, as in `dot16`.
    let mut t = [0.0f32; 16];
    t[..rest.len()].copy_from_slice(rest);
    for l in 0..16 {
        acc[l] += t[l];
    }
    tree16(acc)
}

/// The lanes' fixed tree: `l + 8`, then `l + 4`, then `(0 + 2) + (1 + 3)`.
#[inline(always)]
fn tree16(acc: [f32; 16]) -> f32 {
    let h: [f32; 8] = core::array::from_fn(|l| acc[l] + acc[l + 8]);
    let q: [f32; 4] = core::array::from_fn(|l| h[l] + h[l + 4]);
    (q[0] + q[2]) + (q[1] + q[3])
}

/// An i32 whose order is the float order (-0.0 below +0.0; NaN patterns
/// beyond ±inf).
#[inline(always)]
const fn order_key(x: f32) -> i32 {
    let b = x.to_bits() as i32;
    b ^ (((b >> 31) as u32) >> 1) as i32
}

/// The bit pattern whose [`order_key`] is `k` (the map is its own inverse).
#[inline(always)]
const fn order_key_inverse(k: i32) -> u32 {
    (k ^ (((k >> 31) as u32) >> 1) as i32) as u32
}

/// `e^x` as the module docs define it: branch-free, so loops over it
/// vectorize.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    // 1.5 * 2^23: adding it rounds a value below 2^22 to an integer (ties to
    // even), which the low mantissa bits of the sum then hold.
    const ROUND: f32 = 12_582_912.0;
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    // ln 2 split so that n * LN2_HI is exact for |n| < 2^9.
    const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
    const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
    let xc = x.clamp(-105.0, 89.0);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    // |n| <= 152: the integer sits in the low bits of t's pattern.
    let ni = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // n in [-152, 128]: both halves give normal powers of two.
    let n1 = ni >> 1;
    let n2 = ni - n1;
    let s1 = f32::from_bits(((n1 + 127) as u32) << 23);
    let s2 = f32::from_bits(((n2 + 127) as u32) << 23);
    let y = p * s1 * s2;
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// `Σ a_i b_i` in sixteen lanes and a fixed tree (module docs): the same
/// bits however it is compiled. Panics unless `a.len() == b.len()`.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot: length mismatch");
    dot16(a, b)
}

/// `e^x` (module docs): within 2 ulp, the same bits on every CPU (the C
/// library's `expf` differs between libraries and their CPU-specific paths).
pub fn exp(x: f32) -> f32 {
    exp_f32(x)
}

struct RmsNorm<'a> {
    x: &'a [f32],
    gain: &'a [f32],
    eps: f32,
    out: &'a mut [f32],
}

impl Task for RmsNorm<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let n = self.gain.len();
        for (xr, yr) in self.x.chunks_exact(n).zip(self.out.chunks_exact_mut(n)) {
            let scale = 1.0 / (dot16(xr, xr) / n as f32 + self.eps).sqrt();
            for ((y, &v), &g) in yr.iter_mut().zip(xr).zip(self.gain) {
                *y = v * scale * g;
            }
        }
    }
}

/// RMSNorm of each row of `x` (rows of `gain.len()` values) into `out`:
/// `x / sqrt(mean(x²) + eps) * gain` (module docs). Panics unless `gain`
/// is non-empty, `x.len()` is a multiple of it and `out.len() == x.len()`.
pub fn rms_norm(x: &[f32], gain: &[f32], eps: f32, out: &mut [f32]) {
    rms_norm_at(On::Dispatched, x, gain, eps, out)
}

fn rms_norm_at(on: On, x: &[f32], gain: &[f32], eps: f32, out: &mut [f32]) {
    assert!(
        !gain.is_empty() && x.len().is_multiple_of(gain.len()) && out.len() == x.len(),
        "rms_norm: {} values, {} gains, {} outputs",
        x.len(),
        gain.len(),
        out.len()
    );
    on.run(RmsNorm { x, gain, eps, out })
}

struct SiluMul<'a> {
    gate: &'a mut [f32],
    up: &'a [f32],
}

impl Task for SiluMul<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        for (g, &u) in self.gate.iter_mut().zip(self.up) {
            *g = *g / (1.0 + exp_f32(-*g)) * u;
        }
    }
}

/// SwiGLU's gating: `gate_i = silu(gate_i) * up_i` with `silu(x) = x / (1 +
/// e^-x)` and [`exp`]. Panics unless the lengths are equal.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    silu_mul_at(On::Dispatched, gate, up)
}

fn silu_mul_at(on: On, gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "silu_mul: length mismatch");
    on.run(SiluMul { gate, up })
}

struct Attend<'a, T> {
    /// `kv_heads * g` query heads of `head_dim` values each, the `g` heads
    /// of each KV head together.
    q: &'a [f32],
    head_dim: usize,
    /// KV head `i`'s key in a row starts at `i * head_dim`, its value at
    /// `i * vd`.
    kv_heads: usize,
    keys: &'a [T],
    values: &'a [T],
    stride: usize,
    scale: f32,
    /// A row of `n` weights per query head.
    scores: &'a mut [f32],
    /// A row of `vd` outputs per query head.
    out: &'a mut [f32],
}

/// Positions per block: every head of a call reads a block's keys (and
/// later its values) while they are in L1, so the cache is read from
/// memory once per call, not once per head. 32 rows of three 64-value KV
/// heads are 24 KiB of keys.
const BLOCK: usize = 32;

/// `s_j = dot16(q, k_j) * scale` for the positions of `scores`, key `j` at
/// `keys[j * stride..]` (`ahead`: as in [`scores_by_4`]).
#[inline(always)]
fn scores_of(
    q: &[f32],
    keys: &[f32],
    stride: usize,
    scale: f32,
    scores: &mut [f32],
    ahead: Ahead<'_>,
) {
    let hd = q.len();
    // Head dimensions of common models run four positions at a time.
    let done = match hd {
        32 => scores_by_4::<2>(q, keys, stride, scale, scores, ahead),
        64 => scores_by_4::<4>(q, keys, stride, scale, scores, ahead),
        80 => scores_by_4::<5>(q, keys, stride, scale, scores, ahead),
        96 => scores_by_4::<6>(q, keys, stride, scale, scores, ahead),
        128 => scores_by_4::<8>(q, keys, stride, scale, scores, ahead),
        256 => scores_by_4::<16>(q, keys, stride, scale, scores, ahead),
        _ => 0,
    };
    for (j, s) in scores.iter_mut().enumerate().skip(done) {
        ahead.row(j);
        *s = dot16(q, &keys[j * stride..][..hd]) * scale;
    }
}

/// The softmax of the module docs, in place.
#[inline(always)]
fn softmax(scores: &mut [f32]) {
    // The largest score by an integer max of order-preserving keys
    // (associative, so it vectorizes); NaN scores do not count.
    const NEG_INF: i32 = order_key(f32::NEG_INFINITY);
    let mut top = NEG_INF;
    for &s in scores.iter() {
        top = top.max(if s.is_nan() { NEG_INF } else { order_key(s) });
    }
    let max = f32::from_bits(order_key_inverse(top));
    for s in scores.iter_mut() {
        *s = exp_f32(*s - max);
    }
    let sum = sum16(scores);
    for s in scores.iter_mut() {
        *s /= sum;
    }
}

/// `o_c = fma(p_j, v_{j,c}, o_c)` over the positions of `p` in order,
/// value `j` at `values[j * stride..]`, continuing from `out`'s values
/// (`ahead`: as in [`scores_by_4`], for the values).
#[inline(always)]
fn add_weighted(p: &[f32], values: &[f32], stride: usize, out: &mut [f32], ahead: Ahead<'_>) {
    // 64 outputs at a time, so that independent vector chains hide the
    // FMA latency.
    const CH: usize = 64;
    let vd = out.len();
    let mut c = 0;
    while c < vd {
        let w = CH.min(vd - c);
        let mut acc = [0.0f32; CH];
        acc[..w].copy_from_slice(&out[c..c + w]);
        if w == CH {
            for (j, &p) in p.iter().enumerate() {
                if c == 0 {
                    ahead.row(j);
                }
                let v: &[f32; CH] = values[j * stride + c..][..CH].try_into().unwrap();
                for l in 0..CH {
                    acc[l] = p.mul_add(v[l], acc[l]);
                }
            }
        } else {
            for (j, &p) in p.iter().enumerate() {
                let v = &values[j * stride + c..][..w];
                for (a, &x) in acc.iter_mut().zip(v) {
                    *a = p.mul_add(x, *a);
                }
            }
        }
        out[c..c + w].copy_from_slice(&acc[..w]);
        c += w;
    }
}

/// The rows of the next block that one head's pass asks for: `width`
/// values (none when 0) of row `r + BLOCK` of `rows` (rows of `stride`
/// values from the current block's start, every KV head's span) for the
/// rows `r` of its share. The heads of a call take every `heads`-th row in
/// turn, so the requests spread over the whole block's arithmetic: a burst
/// of them (one head asking for every row) stalls on the CPU's few line
/// fill buffers, and the arithmetic waits with it.
#[derive(Clone, Copy)]
struct Ahead<'a> {
    rows: &'a [f32],
    stride: usize,
    width: usize,
    /// Bit `r`: row `r` is this head's share.
    share: u32,
}

impl<'a> Ahead<'a> {
    /// Head `h`'s share of the rows among `heads` heads.
    #[inline(always)]
    fn new(rows: &'a [f32], stride: usize, width: usize, h: usize, heads: usize) -> Self {
        let mut share = 0u32;
        for r in (h..BLOCK).step_by(heads) {
            share |= 1 << r;
        }
        Ahead {
            rows,
            stride,
            width,
            share,
        }
    }

    /// Asks for row `r + BLOCK` if `r` is this head's share.
    #[inline(always)]
    fn row(self, r: usize) {
        if self.width > 0 && r < BLOCK && self.share >> r & 1 == 1 {
            prefetch_rows(self.rows, self.stride, r + BLOCK..r + BLOCK + 1, self.width);
        }
    }
}

/// Asks for the cache lines of `rows` rows of `width` values (row `j` at
/// `base[j * stride..]`) ahead of their use; positions past the end of
/// `base` are skipped.
#[inline(always)]
fn prefetch_rows<T>(base: &[T], stride: usize, rows: core::ops::Range<usize>, width: usize) {
    for j in rows {
        let Some(row) = base.get(j * stride..j * stride + width) else {
            return;
        };
        let p = row.as_ptr() as usize;
        let end = p + core::mem::size_of_val(row);
        let mut line = p & !63;
        while line < end {
            prefetch_line(line as *const u8);
            line += 64;
        }
    }
}

/// A hint to bring one cache line into L2 (the loops then find it there or
/// in L1); it never faults and reads nothing.
#[inline(always)]
fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint: it never faults and reads nothing observable.
    unsafe {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        _mm_prefetch::<_MM_HINT_T1>(p as *const i8)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// What a KV cache holds: `f32`, or `f16` (half the bytes to read per
/// position, as llama.cpp's default cache). f16 values are widened to f32
/// (exactly) before any arithmetic, so a cache of f16 values gives the bits
/// of an f32 cache holding the same values.
pub trait CacheValue: Copy + Send + Sync + sealed::Sealed {}
impl CacheValue for f32 {}
impl CacheValue for half::f16 {}

mod sealed {
    /// A cache's values by type (a constant after inlining).
    pub enum View<'a> {
        F32(&'a [f32]),
        F16(&'a [half::f16]),
    }
    pub trait Sealed: Sized {
        fn view(src: &[Self]) -> View<'_>;
    }
    impl Sealed for f32 {
        #[inline(always)]
        fn view(src: &[f32]) -> View<'_> {
            View::F32(src)
        }
    }
    impl Sealed for half::f16 {
        #[inline(always)]
        fn view(src: &[half::f16]) -> View<'_> {
            View::F16(src)
        }
    }
}
use sealed::View;

/// Rows `b0..b0 + nb` of `width` values (row `j` at `src[j * stride..]`) as
/// f32 rows and their stride: the cache itself when it holds f32, else
/// widened into `buf` (stride `width`), asking for the next block's rows
/// as it goes. `f16c`: whether the CPU has F16C (detected once per call).
#[inline(always)]
fn block_rows<'a>(
    src: View<'a>,
    (b0, nb, stride, width): (usize, usize, usize, usize),
    buf: &'a mut [f32],
    f16c: bool,
) -> (&'a [f32], usize) {
    match src {
        View::F32(src) => (&src[b0 * stride..], stride),
        View::F16(src) => {
            let src = &src[b0 * stride..];
            for (j, dst) in buf[..nb * width].chunks_exact_mut(width).enumerate() {
                prefetch_rows(src, stride, j + BLOCK..j + BLOCK + 1, width);
                widen_row(&src[j * stride..][..width], dst, f16c);
            }
            (&buf[..nb * width], width)
        }
    }
}

/// Whether the CPU has F16C (x86-64; false elsewhere).
fn has_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("f16c");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `dst[i] = src[i]` widened (exact; the bits of `f16::to_f32`): by F16C
/// when `f16c` (the format's plain-Rust widening takes ~8 instructions per
/// 8 values, F16C one).
#[inline(always)]
fn widen_row(src: &[half::f16], dst: &mut [f32], f16c: bool) {
    #[cfg(target_arch = "x86_64")]
    if f16c {
        // SAFETY: `f16c` comes from `has_f16c` (F16C implies AVX).
        unsafe { widen_row_f16c(src, dst) };
        return;
    }
    let _ = f16c;
    FloatElem::to_f32_slice(src, dst);
}

/// [`widen_row`] by `vcvtph2ps`, 8 values at a time.
///
/// # Safety
/// The CPU must have F16C and AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
#[inline]
unsafe fn widen_row_f16c(src: &[half::f16], dst: &mut [f32]) {
    use core::arch::x86_64::{__m128i, _mm256_cvtph_ps, _mm256_storeu_ps, _mm_loadu_si128};
    let whole = src.len() - src.len() % 8;
    let (src, rs) = src.split_at(whole);
    let (dst, rd) = dst.split_at_mut(whole);
    for (s, d) in src.chunks_exact(8).zip(dst.chunks_exact_mut(8)) {
        // SAFETY: `s` holds 8 f16 (16 bytes) and `d` 8 f32; unaligned
        // loads and stores; the features are the caller's promise.
        unsafe {
            let h = _mm_loadu_si128(s.as_ptr() as *const __m128i);
            _mm256_storeu_ps(d.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
    }
    FloatElem::to_f32_slice(rs, rd);
}

impl<T: CacheValue> Task for Attend<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let (hd, stride, kvh) = (self.head_dim, self.stride, self.kv_heads);
        let heads = self.q.len() / hd;
        let g = heads / kvh;
        let (n, vd) = (self.scores.len() / heads, self.out.len() / heads);
        // Each position's keys (values) of all KV heads: one span of the row.
        let (kw, vw) = (kvh * hd, kvh * vd);
        let (keys, values) = (self.keys, self.values);
        let widens = matches!(T::view(keys), View::F16(_));
        let f16c = widens && has_f16c();
        let mut buf = vec![0.0f32; if widens { BLOCK * kw.max(vw) } else { 0 }];
        // Blocks of positions, every query head within a block (each
        // head's values are computed exactly as alone: only the order of
        // independent computations changes). The heads share asking for
        // the next block's rows ([`Ahead`]; f32: f16 rows are asked for as
        // they are widened).
        prefetch_rows(keys, stride, 0..BLOCK.min(n), kw);
        for b0 in (0..n).step_by(BLOCK) {
            let nb = BLOCK.min(n - b0);
            let (kb, ks) = block_rows(T::view(keys), (b0, nb, stride, kw), &mut buf, f16c);
            for (h, q) in self.q.chunks_exact(hd).enumerate() {
                let s = &mut self.scores[h * n + b0..][..nb];
                let ahead = Ahead::new(kb, ks, if widens { 0 } else { kw }, h, heads);
                scores_of(q, &kb[h / g * hd..], ks, self.scale, s, ahead);
            }
        }
        prefetch_rows(values, stride, 0..BLOCK.min(n), vw);
        for s in self.scores.chunks_exact_mut(n) {
            softmax(s);
        }
        self.out.fill(0.0);
        for b0 in (0..n).step_by(BLOCK) {
            let nb = BLOCK.min(n - b0);
            let (vb, vs) = block_rows(T::view(values), (b0, nb, stride, vw), &mut buf, f16c);
            let rows = self
                .scores
                .chunks_exact(n)
                .zip(self.out.chunks_exact_mut(vd));
            for (h, (p, o)) in rows.enumerate() {
                let ahead = Ahead::new(vb, vs, if widens { 0 } else { vw }, h, heads);
                add_weighted(&p[b0..b0 + nb], &vb[h / g * vd..], vs, o, ahead);
            }
        }
    }
}

/// Attention of one query head `q` over `scores.len()` cached positions:
/// position `j`'s key is `keys[j * stride..][..q.len()]` and its value
/// `values[j * stride..][..out.len()]`; the softmax weights (scaled by
/// `scale`) are left in `scores` and `out` receives their weighted sum of
/// the values (module docs). Panics unless `q` and `scores` are non-empty
/// and `keys` / `values` hold the last position.
pub fn attend<T: CacheValue>(
    q: &[f32],
    keys: &[T],
    values: &[T],
    stride: usize,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    attend_group(q, q.len(), keys, values, stride, scale, scores, out)
}

/// [`attend`] for the `g = q.len() / head_dim` query heads that share one
/// KV head (grouped-query attention), with the bits of `g` calls of
/// [`attend`] but each cached key and value read from memory once. Head
/// `h`'s query is `q[h * head_dim..][..head_dim]`, its weights
/// `scores[h * n..][..n]` (`n = scores.len() / g` positions) and its output
/// `out[h * vd..][..vd]` (`vd = out.len() / g`). Panics unless `head_dim`
/// divides `q.len()` (`g >= 1`), `g` divides `scores.len()` and
/// `out.len()`, `n >= 1`, and `keys` / `values` hold the last position.
#[allow(clippy::too_many_arguments)]
pub fn attend_group<T: CacheValue>(
    q: &[f32],
    head_dim: usize,
    keys: &[T],
    values: &[T],
    stride: usize,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    attend_heads(q, head_dim, 1, keys, values, stride, scale, scores, out)
}

/// [`attend_group`] for every KV head of one position at once: the bits
/// of a call per KV head, with the cache read as whole rows in order (one
/// stream, where a call per KV head reads a strided part of each row).
/// With `vd = out.len() / heads` and `heads = q.len() / head_dim`, KV
/// head `i`'s key in row `j` is `keys[j * stride + i * head_dim..]` and its
/// value `values[j * stride + i * vd..]`. Query head `h` (the `g = heads /
/// kv_heads` heads of KV head 0 first) uses KV head `h / g`; its weights are
/// `scores[h * n..][..n]` and its output `out[h * vd..][..vd]`. Panics
/// unless `kv_heads >= 1`, the query heads split into `kv_heads` equal
/// groups, `scores` and `out` into whole heads, `n >= 1`, and the rows hold
/// every KV head's last key and value.
#[allow(clippy::too_many_arguments)]
pub fn attend_heads<T: CacheValue>(
    q: &[f32],
    head_dim: usize,
    kv_heads: usize,
    keys: &[T],
    values: &[T],
    stride: usize,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let task = Attend {
        q,
        head_dim,
        kv_heads,
        keys,
        values,
        stride,
        scale,
        scores,
        out,
    };
    attend_at(attend_on(), task)
}

/// Checks the lengths, then runs `a` on `on`.
fn attend_at<T: CacheValue>(on: On, a: Attend<'_, T>) {
    let (hd, kvh) = (a.head_dim, a.kv_heads);
    let heads = a.q.len().checked_div(hd).unwrap_or(0);
    assert!(
        heads >= 1
            && kvh >= 1
            && a.q.len() == heads * hd
            && heads.is_multiple_of(kvh)
            && a.scores.len().is_multiple_of(heads)
            && a.out.len().is_multiple_of(heads),
        "attend: {} query values, head size {}, {} KV heads, {} weights and {} outputs do not make whole heads",
        a.q.len(),
        hd,
        kvh,
        a.scores.len(),
        a.out.len()
    );
    let (n, vd) = (a.scores.len() / heads, a.out.len() / heads);
    let last = n.checked_sub(1).expect("attend: no positions");
    // The last row's span of every KV head's key (value).
    let need = |width: usize| {
        let span = kvh.checked_mul(width)?;
        last.checked_mul(a.stride)?.checked_add(span)
    };
    assert!(
        need(hd).is_some_and(|x| x <= a.keys.len())
            && need(vd).is_some_and(|x| x <= a.values.len()),
        "attend: {} positions of stride {} need {:?} key and {:?} values, got {} and {}",
        n,
        a.stride,
        need(hd),
        need(vd),
        a.keys.len(),
        a.values.len()
    );
    on.run(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values with specials mixed in.
    fn values(n: usize, seed: u64, specials: bool) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let u = (s >> 40) as f32 / (1u64 << 24) as f32;
                match (specials, i % 97) {
                    (true, 3) => -0.0,
                    (true, 11) => f32::from_bits(1 + (s as u32 & 0x7f_ffff)),
                    (true, 29) => 1e30,
                    _ => (u - 0.5) * 8.0,
                }
            })
            .collect()
    }

    fn ulps(a: f32, b: f64) -> f64 {
        // Distance in units of the f32 spacing at the exact value.
        let e = (b as f32).abs();
        let spacing = if e < f32::MIN_POSITIVE {
            f32::from_bits(1) as f64
        } else {
            (f32::from_bits(e.to_bits() + 1) - e) as f64
        };
        ((a as f64) - b).abs() / spacing
    }

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = (0.0f64, 0.0f32);
        let (lo, hi) = ((-104.0f32).to_bits(), 88.72f32.to_bits());
        // All of [0, 88.72] and [-104, 0] by a stride of 97 patterns.
        for bits in (0..hi).step_by(97).chain((0x8000_0000..lo).step_by(97)) {
            let x = f32::from_bits(bits);
            let e = (x as f64).exp();
            if e > f32::MAX as f64 {
                continue;
            }
            let u = ulps(exp(x), e);
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(worst.0 <= 2.0, "exp: {} ulp at {:e}", worst.0, worst.1);
    }

    #[test]
    fn exp_special_values() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert_eq!(exp(1000.0), f32::INFINITY);
        assert_eq!(exp(f32::NEG_INFINITY).to_bits(), 0);
        assert_eq!(exp(-104.0).to_bits(), 0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(88.72) < f32::INFINITY);
        // The largest x with a finite result, and the smallest subnormal.
        assert_eq!(exp(-103.0).to_bits(), 1, "{:e}", exp(-103.0));
        assert!(exp(-100.0) > 0.0 && exp(-100.0) < f32::MIN_POSITIVE);
    }

    #[test]
    fn dot_is_the_sixteen_lane_tree() {
        let (a, b) = (values(77, 1, false), values(77, 2, false));
        let mut s = [0.0f32; 16];
        for i in 0..77 {
            s[i % 16] = a[i].mul_add(b[i], s[i % 16]);
        }
        for w in [8, 4, 2, 1] {
            for l in 0..w {
                s[l] += s[l + w];
            }
        }
        assert_eq!(dot(&a, &b).to_bits(), s[0].to_bits());
    }

    /// Every clone this CPU runs gives the baseline's bits.
    #[test]
    fn clones_give_the_baseline_bits() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let run = |on: On| {
            let mut got = Vec::new();
            for (n, specials) in [(576, false), (64, true), (100, true)] {
                let x = values(3 * n, n as u64, specials);
                let g = values(n, 7, false);
                let mut y = vec![0.0; x.len()];
                rms_norm_at(on, &x, &g, 1e-5, &mut y);
                got.extend(bits(&y));
                let mut gate = x.clone();
                silu_mul_at(on, &mut gate, &values(3 * n, 9, specials));
                got.extend(bits(&gate));
            }
            for (g, hd, stride, positions, kv_heads) in [
                (1, 64, 192, 1, 1),
                (3, 64, 192, 100, 1),
                (9, 64, 192, 70, 3),
                (1, 40, 45, 7, 1),
                (2, 80, 80, 33, 1),
            ] {
                let q = values(g * hd, 3, false);
                let keys = values(stride * positions, 4, false);
                let vals = values(stride * positions, 5, true);
                let (mut p, mut o) = (vec![0.0; g * positions], vec![0.0; g * hd]);
                let task = Attend {
                    q: &q,
                    head_dim: hd,
                    kv_heads,
                    keys: &keys,
                    values: &vals,
                    stride,
                    scale: 0.125,
                    scores: &mut p,
                    out: &mut o,
                };
                attend_at(on, task);
                got.extend(bits(&p));
                got.extend(bits(&o));
            }
            got
        };
        let base = run(On::Level(Level::Baseline));
        for level in Level::ALL {
            match On::checked(level) {
                Ok(on) => assert!(run(on) == base, "{level} differs from the baseline"),
                Err(_) => eprintln!("SKIPPED: {level} (not on this CPU)"),
            }
        }
        assert!(run(On::Dispatched) == base);
        assert!(run(attend_on()) == base);
    }

    /// One head's attention as the module docs write it, one step at a time.
    fn by_definition(
        q: &[f32],
        keys: &[f32],
        vals: &[f32],
        stride: usize,
        scale: f32,
        n: usize,
        vd: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let s: Vec<f32> = (0..n)
            .map(|j| dot(q, &keys[j * stride..][..q.len()]) * scale)
            .collect();
        let mut m = f32::NEG_INFINITY;
        for &x in &s {
            // +0.0 ranks above -0.0.
            if x > m || (x == m && x.is_sign_positive()) {
                m = x;
            }
        }
        let mut p: Vec<f32> = s.iter().map(|&x| exp(x - m)).collect();
        let mut lanes = [0.0f32; 16];
        for (j, &x) in p.iter().enumerate() {
            lanes[j % 16] += x;
        }
        for w in [8, 4, 2, 1] {
            for l in 0..w {
                lanes[l] += lanes[l + w];
            }
        }
        for x in p.iter_mut() {
            *x /= lanes[0];
        }
        let mut o = vec![0.0f32; vd];
        for (j, &pj) in p.iter().enumerate() {
            for (c, oc) in o.iter_mut().enumerate() {
                *oc = pj.mul_add(vals[j * stride + c], *oc);
            }
        }
        (p, o)
    }

    /// A group of heads gives each head's bits alone, for group sizes,
    /// head sizes and position counts around the block and the four-position
    /// steps (values with specials).
    #[test]
    fn a_group_gives_each_heads_bits() {
        for (g, hd, vd, stride, n) in [
            (3, 64, 64, 192, 1),
            (3, 64, 64, 192, 31),
            (3, 64, 64, 192, 32),
            (3, 64, 64, 192, 33),
            (4, 128, 128, 256, 70),
            (2, 40, 24, 41, 67),
            (1, 64, 64, 64, 97),
        ] {
            let q = values(g * hd, n as u64, true);
            let keys = values(stride * n, 4, false);
            let vals = values(stride * n, 5, true);
            let (mut p, mut o) = (vec![0.0; g * n], vec![0.0; g * vd]);
            attend_group(&q, hd, &keys, &vals, stride, 0.125, &mut p, &mut o);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            for h in 0..g {
                let (mut p1, mut o1) = (vec![0.0; n], vec![0.0; vd]);
                let qh = &q[h * hd..][..hd];
                attend(qh, &keys, &vals, stride, 0.125, &mut p1, &mut o1);
                let (p2, o2) = by_definition(qh, &keys, &vals, stride, 0.125, n, vd);
                for (pp, oo) in [(&p1, &o1), (&p2, &o2)] {
                    assert_eq!(
                        bits(&p[h * n..][..n]),
                        bits(pp),
                        "g {g} hd {hd} n {n} head {h}"
                    );
                    assert_eq!(
                        bits(&o[h * vd..][..vd]),
                        bits(oo),
                        "g {g} hd {hd} n {n} head {h}"
                    );
                }
            }
        }
    }

    /// Every KV head of a row at once gives the bits of a group call per
    /// KV head, for f32 and f16 caches, around the block and the
    /// four-position steps, with rows wider than the heads' span.
    #[test]
    fn a_row_of_kv_heads_gives_each_groups_bits() {
        fn check<T: CacheValue>(
            keys: &[T],
            vals: &[T],
            case: (usize, usize, usize, usize, usize, usize),
        ) {
            let (kvh, g, hd, vd, stride, n) = case;
            let heads = kvh * g;
            let q = values(heads * hd, n as u64 + 1, true);
            let (mut p, mut o) = (vec![0.0; heads * n], vec![0.0; heads * vd]);
            attend_heads(&q, hd, kvh, keys, vals, stride, 0.3, &mut p, &mut o);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            for i in 0..kvh {
                let (mut p1, mut o1) = (vec![0.0; g * n], vec![0.0; g * vd]);
                let qi = &q[i * g * hd..][..g * hd];
                let (ki, vi) = (&keys[i * hd..], &vals[i * vd..]);
                attend_group(qi, hd, ki, vi, stride, 0.3, &mut p1, &mut o1);
                assert_eq!(
                    bits(&p[i * g * n..][..g * n]),
                    bits(&p1),
                    "{case:?} KV head {i}"
                );
                assert_eq!(
                    bits(&o[i * g * vd..][..g * vd]),
                    bits(&o1),
                    "{case:?} KV head {i}"
                );
            }
        }
        for case in [
            (3, 3, 64, 64, 192, 1),
            (3, 3, 64, 64, 192, 31),
            (3, 3, 64, 64, 192, 65),
            (2, 4, 128, 128, 300, 40),
            (4, 1, 40, 24, 170, 37),
            (1, 2, 64, 64, 64, 33),
        ] {
            let (kvh, _, hd, vd, stride, n) = case;
            // Each row holds every KV head's key and value span.
            assert!(kvh * hd.max(vd) <= stride);
            let keys = values(stride * n, 4, false);
            let vals = values(stride * n, 5, true);
            check(&keys, &vals, case);
            let k16: Vec<half::f16> = keys.iter().map(|&x| half::f16::from_f32(x)).collect();
            let v16: Vec<half::f16> = vals.iter().map(|&x| half::f16::from_f32(x)).collect();
            check(&k16, &v16, case);
        }
    }

    /// An f16 cache gives the bits of an f32 cache holding its values, on
    /// every clone (widened by F16C or by plain Rust).
    #[test]
    fn an_f16_cache_gives_the_bits_of_its_values() {
        // The weights and outputs of every head, as bits.
        fn run<T: CacheValue>(
            on: On,
            a: (&[f32], usize, &[T], &[T], usize),
            g: usize,
            n: usize,
            vd: usize,
        ) -> Vec<u32> {
            let (q, head_dim, keys, values, stride) = a;
            let (mut p, mut o) = (vec![0.0f32; g * n], vec![0.0f32; g * vd]);
            let (scores, out) = (&mut p[..], &mut o[..]);
            let t = Attend {
                q,
                head_dim,
                kv_heads: 1,
                keys,
                values,
                stride,
                scale: 0.2,
                scores,
                out,
            };
            attend_at(on, t);
            p.iter().chain(&o).map(|x| x.to_bits()).collect()
        }
        for (g, hd, vd, stride, n) in [(3, 64, 64, 192, 70), (2, 40, 27, 45, 33), (1, 8, 8, 8, 5)] {
            let q = values(g * hd, 11, false);
            let k16: Vec<half::f16> = values(stride * n, 12, true)
                .into_iter()
                .map(half::f16::from_f32)
                .collect();
            let v16: Vec<half::f16> = values(stride * n, 13, true)
                .into_iter()
                .map(half::f16::from_f32)
                .collect();
            let k32: Vec<f32> = k16.iter().map(|h| h.to_f32()).collect();
            let v32: Vec<f32> = v16.iter().map(|h| h.to_f32()).collect();
            let want = run(
                On::Level(Level::Baseline),
                (&q, hd, &k32, &v32, stride),
                g,
                n,
                vd,
            );
            for level in Level::ALL {
                match On::checked(level) {
                    Ok(on) => {
                        let got = run(on, (&q, hd, &k16, &v16, stride), g, n, vd);
                        assert!(got == want, "{level}, g {g} hd {hd} n {n}");
                    }
                    Err(_) => eprintln!("SKIPPED: {level} (not on this CPU)"),
                }
            }
        }
    }

    #[test]
    fn attention_weights_sum_to_one_and_pick_the_match() {
        // Keys orthogonal but one: the softmax puts nearly all weight there.
        let (hd, n) = (16, 5);
        let mut keys = vec![0.0f32; hd * n];
        keys[3 * hd] = 50.0;
        let mut q = vec![0.0f32; hd];
        q[0] = 1.0;
        let vals: Vec<f32> = (0..hd * n).map(|i| (i / hd) as f32).collect();
        let (mut p, mut o) = (vec![0.0; n], vec![0.0; hd]);
        attend(&q, &keys, &vals, hd, 1.0, &mut p, &mut o);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(
            p[3] > 0.999 && o.iter().all(|&v| (v - 3.0).abs() < 1e-3),
            "{p:?} {o:?}"
        );
    }

    #[test]
    #[should_panic(expected = "attend")]
    fn attention_checks_the_cache_length() {
        let (mut p, mut o) = (vec![0.0; 3], vec![0.0; 8]);
        attend(&[0.0; 8], &[0.0; 23], &[0.0; 24], 8, 1.0, &mut p, &mut o);
    }

    /// Heads that do not divide, and caches short of the last KV head's
    /// span, are refused with their message.
    #[test]
    fn grouped_attention_checks_its_heads_and_cache() {
        let message = |f: &dyn Fn()| {
            let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_err();
            e.downcast_ref::<String>().cloned().unwrap_or_default()
        };
        let cases: [(&str, &dyn Fn()); 3] = [
            // Two query heads of 8 and 6 weights do not make whole heads
            // with 15 outputs.
            ("whole heads", &|| {
                let (mut p, mut o) = (vec![0.0; 6], vec![0.0; 15]);
                let (k, v) = ([0.0; 64], [0.0; 64]);
                attend_group(&[0.0; 16], 8, &k, &v, 8, 1.0, &mut p, &mut o);
            }),
            // Four query heads do not split into three KV heads.
            ("whole heads", &|| {
                let (mut p, mut o) = (vec![0.0; 4], vec![0.0; 32]);
                let (k, v) = ([0.0; 24], [0.0; 24]);
                attend_heads(&[0.0; 32], 8, 3, &k, &v, 24, 1.0, &mut p, &mut o);
            }),
            // Two positions of three KV heads of 8 need 24 + 24 keys.
            ("need Some(48) key", &|| {
                let (mut p, mut o) = (vec![0.0; 6], vec![0.0; 24]);
                let (k, v) = ([0.0; 47], [0.0; 48]);
                attend_heads(&[0.0; 24], 8, 3, &k, &v, 24, 1.0, &mut p, &mut o);
            }),
        ];
        for (want, f) in cases {
            let got = message(f);
            assert!(got.contains(want), "{want:?} not in {got:?}");
        }
    }
}
