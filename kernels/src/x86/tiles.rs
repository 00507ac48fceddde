//! The x86 tiles, written once over a register width ([`Width`]) and an
//! integer dot ([`Dot`], [`Vnni`]); `avx2.rs` and `avx512.rs` instantiate
//! them with their instructions and tiling constants.
//!
//! Each lane of a unit (see [`super::simd`]) runs the canonical sequence of
//! the scalar kernel for its output row. Tiles:
//! - batch 1 (and batch 2 with `vpmaddubsw`): `Q_GEMV_PANELS` panels per
//!   pass, every unit of each, so that every line of the panels is read
//!   once; each panel stream (codes and scales) is prefetched ahead;
//! - `vpmaddubsw` batches ([`q_gemm_madd`]): one unit x a group of rows
//!   over whole blocks (the dot keeps i16 partial sums per block, so it
//!   works on a block's 8 code vectors at once); Q8_0's sign trick does its
//!   code-only work once per chunk for all rows of the group;
//! - `vpdpbusd` batches ([`q_gemm_vnni`]): K in passes of `GEMM_KB`
//!   blocks, a register tile of `panels` panels x `rows` rows per pass,
//!   chunk-outer: each 4-code chunk is loaded once for every row and each
//!   activation broadcast serves every unit, so `units x rows` independent
//!   chains hide the instruction's latency. In batches of more than
//!   `KEEP_ROWS` rows (Q5: more than one row group) the first row group of
//!   a pass keeps the split codes and widened scales in an L1 buffer that
//!   the other groups read;
//! - float formats: few rows stream the panels (widened as used); more
//!   rows run K-chunk by K-chunk over x packed chunk-major by the driver,
//!   the first row group of each chunk widening the weights and keeping
//!   the f32 in L1 for the others.

use super::simd::{act_scales, Codes, Dot, Float, FloatKind, Kind, Vnni, Width};
use super::{
    prefetch, prefetch_l1, scratch, F16_KC, FROM_KEPT, FROM_PANEL, FROM_PANEL_WARM, GEMV_PREFETCH,
    KEEP_ROWS, L1_PREFETCH, PANEL_TO_KEPT,
};
use crate::act::ActBlock;
use crate::pack::NR;
use crate::{F32Line, TileArgs, MAX_TILE_ROWS};
use core::ops::Range;

/// `for $c in 0..N $body`, written out: LLVM leaves a long chunk loop
/// rolled, and then every use of `$c` (which unit, nibble and bit it
/// selects) is computed at run time.
macro_rules! unroll {
    ($c:ident in 0..4 => $body:block) => {{
        {
            let $c = 0usize;
            $body
        }
        {
            let $c = 1usize;
            $body
        }
        {
            let $c = 2usize;
            $body
        }
        {
            let $c = 3usize;
            $body
        }
    }};
    ($c:ident in 0..8 => $body:block) => {{
        unroll!($c in 0..4 => $body);
        {
            let $c = 4usize;
            $body
        }
        {
            let $c = 5usize;
            $body
        }
        {
            let $c = 6usize;
            $body
        }
        {
            let $c = 7usize;
            $body
        }
    }};
}

/// `$body` with the constant `$R` equal to the run-time count `$r`, for
/// counts in `$lo..=$hi` (constant expressions that may name the generic
/// parameters, evaluated per instantiation). Arms outside the range have a
/// `false` constant guard and are never compiled, so each tile instantiates
/// only the row and panel counts its caller can ask for (compile time: the
/// fuzz build compiles this crate as one unit).
macro_rules! with_count {
    ($r:expr, $R:ident in $lo:expr, $hi:expr => $body:expr) => {
        with_count!(@arms $r, $R, $lo, $hi, $body, [1 2 3 4 5 6 7 8 9 10 11 12])
    };
    (@arms $r:expr, $R:ident, $lo:expr, $hi:expr, $body:expr, [$($n:literal)*]) => {
        match $r {
            $($n if const { count_in($n, $lo, $hi) } => {
                const $R: usize = $n;
                $body
            })*
            _ => unreachable!("count outside the tile's range"),
        }
    };
}

/// `lo <= n <= hi` ([`with_count`]'s arm guard).
const fn count_in(n: usize, lo: usize, hi: usize) -> bool {
    lo <= n && n <= hi
}

/// The fewest rows of a batched row group reading its codes from `src`: a
/// group that keeps codes for the others is the first of a tile taller
/// than one group, so it has all `rows`.
const fn min_rows(src: u8, rows: usize) -> usize {
    if src == PANEL_TO_KEPT {
        rows
    } else {
        1
    }
}

/// Most units per panel (two ymm halves); arrays indexed by unit have this
/// length and the kernels use the first `W::UNITS` entries.
const MAX_UNITS: usize = 2;

/// Byte offset of unit `u` in a 64-byte code chunk.
#[inline(always)]
fn unit_bytes<W: Width>(u: usize) -> usize {
    u * W::UNIT_BYTES
}

/// The 8 code vectors of unit `u` of the block whose codes are at `p`
/// (vector `c`: elements `4c..4c + 4` of each row): Q8_0's stored codes, or
/// the unsigned 4-, 5- or 6-bit codes.
#[inline(always)]
unsafe fn load_codes<W: Width, D: Dot<W>, K: Kind>(p: *const u8, u: usize) -> [W::I; 8] {
    // SAFETY: p points at one block's codes inside a panel (K::CODE_BYTES,
    // 64-byte aligned chunks); features enabled by the calling kernel.
    unsafe {
        let o = unit_bytes::<W>(u);
        let mut v = [W::zero_i(); 8];
        if K::NIBBLES {
            let (q5, q6) = (K::CODES == Codes::Q5, K::CODES == Codes::Q6);
            let qh = if q5 || q6 {
                W::load_i(p.add(4 * 64 + o))
            } else {
                W::zero_i()
            };
            let h1 = if q6 {
                W::load_i(p.add(5 * 64 + o))
            } else {
                W::zero_i()
            };
            for c in 0..4 {
                let raw = W::load_i(p.add(64 * c + o));
                [v[c], v[c + 4]] = if q5 {
                    [W::q5_low(raw), W::q5_high(raw, qh, c)]
                } else if q6 {
                    let [lo, hi] = W::nibbles(raw);
                    [W::with_high2(lo, qh, c), W::with_high2(hi, h1, c)]
                } else {
                    W::q4_codes::<D>(raw)
                };
            }
        } else {
            for (c, v) in v.iter_mut().enumerate() {
                *v = W::load_i(p.add(64 * c + o));
            }
        }
        v
    }
}

/// Where Q6 half `h`'s integer sum starts: `-32 * Σa` over that half.
#[inline(always)]
unsafe fn half_init<W: Width, K: Kind>(act: &ActBlock, h: usize) -> W::I {
    // SAFETY: features enabled by the calling kernel.
    unsafe { W::splat_i(-K::OFFSET * act.half_sums[h] as i32) }
}

/// Where a block's integer sum starts: the activation correction when the
/// codes carry an offset (unsigned nibbles, or Q8_0 codes as stored; Q6:
/// the first half's), zero for formats with a minimum (`isum = raw`) and
/// for signed Q8_0.
#[inline(always)]
unsafe fn isum_init<W: Width, D: Dot<W>, K: Kind>(act: &ActBlock) -> W::I {
    // SAFETY: features enabled by the calling kernel.
    unsafe {
        if K::CODES == Codes::Q6 {
            half_init::<W, K>(act, 0)
        } else if !K::MIN && (K::NIBBLES || D::Q8_UNSIGNED) {
            W::splat_i(act.corr)
        } else {
            W::zero_i()
        }
    }
}

/// Q6: `s0 * lo + s1 * hi` as f32, the sums of the two halves (with their
/// corrections) times their scales, exactly: |lo|, |hi| <= 16 * 32 * 127,
/// so each product and the sum are integers below 2^24 (f32 multiplies
/// take fewer port-0 cycles than `vpmulld`).
#[inline(always)]
unsafe fn q6_isum<W: Width>(lo: W::I, hi: W::I, [s0, s1]: [W::F; 2]) -> W::F {
    // SAFETY: features enabled by the calling kernel.
    unsafe { W::fmadd(s1, W::cvt(hi), W::mul(s0, W::cvt(lo))) }
}

/// The exact integer sums of one block (one unit) for `R` activation rows,
/// as f32 (exact); `hs`: the unit's Q6 half scales (else unused). (Loops
/// rather than `array::from_fn`: a closure does not carry the kernel's
/// target features, and one too large to be inlined turns every intrinsic
/// in it into a call.)
#[inline(always)]
unsafe fn block_isums<W: Width, D: Dot<W>, K: Kind, const R: usize>(
    codes: &[W::I; 8],
    act: &[&ActBlock; R],
    hs: [W::F; 2],
) -> [W::F; R] {
    // SAFETY: features enabled by the calling kernel; each act row holds 32 codes.
    unsafe {
        let mut isum = [W::zero_i(); R];
        for (isum, act) in isum.iter_mut().zip(act) {
            *isum = isum_init::<W, D, K>(act);
        }
        let mut f = [W::zero_f(); R];
        if K::CODES == Codes::Q6 {
            let lo = [codes[0], codes[1], codes[2], codes[3]];
            let hi = [codes[4], codes[5], codes[6], codes[7]];
            for ((f, isum), act) in f.iter_mut().zip(isum).zip(act) {
                let a = act.qs.as_ptr();
                let hi_init = half_init::<W, K>(act, 1);
                let lo = D::nib_block::<2, 4>(isum, &lo, a);
                let hi = D::nib_block::<2, 4>(hi_init, &hi, a.add(16));
                *f = q6_isum::<W>(lo, hi, hs);
            }
            return f;
        }
        if K::NIBBLES {
            for (isum, act) in isum.iter_mut().zip(act) {
                let a = act.qs.as_ptr();
                *isum = if K::CODES == Codes::Q5 {
                    D::nib_block::<4, 8>(*isum, codes, a)
                } else {
                    D::q4_block(*isum, codes, a)
                };
            }
        } else {
            let mut a = [core::ptr::null(); R];
            for (a, act) in a.iter_mut().zip(act) {
                *a = act.qs.as_ptr();
            }
            isum = D::q8_rows(isum, codes, a);
        }
        for (f, isum) in f.iter_mut().zip(isum) {
            *f = W::cvt(isum);
        }
        f
    }
}

/// `acc = fma(dw * da, isum, acc)` (`isum`: the exact integer sum as
/// f32), lane-wise; then, for formats with a minimum, `acc = fma(mw, da *
/// Σa, acc)` (`[da, da * Σa]`: see [`act_scales`]).
#[inline(always)]
unsafe fn accumulate<W: Width, K: Kind>(
    acc: W::F,
    dw: W::F,
    mw: W::F,
    [da, s]: [f32; 2],
    isum: W::F,
) -> W::F {
    // SAFETY: features enabled by the calling kernel.
    unsafe {
        let acc = W::fmadd(W::mul(dw, W::splat_f(da)), isum, acc);
        if K::MIN {
            W::fmadd(mw, W::splat_f(s), acc)
        } else {
            acc
        }
    }
}

/// The int8 scales of the two halves of unit `u` of Q6 sub-block `s` of the
/// block whose scales are at `p`, as f32 (zero for other formats).
#[inline(always)]
unsafe fn half_scales<W: Width, K: Kind>(p: *const u8, s: usize, u: usize) -> [W::F; 2] {
    // SAFETY: p points at a Q6_K block's scales inside a panel: 16 f16 `d`,
    // then 16 x 16 int8 scales (byte t of row r at 16 t + r).
    unsafe {
        if K::CODES != Codes::Q6 {
            return [W::zero_f(); 2];
        }
        let small = p.add(K::SCALES * NR * 2 + W::LANES * u);
        [
            W::cvt(W::i8s(small.add(2 * s * NR))),
            W::cvt(W::i8s(small.add((2 * s + 1) * NR))),
        ]
    }
}

/// The `d` and (with a minimum; else unused) `m` scales of unit `u` of
/// sub-block `s` of the block whose scales are at `p`. Q4_K / Q5_K's are
/// computed as the canonical arithmetic says: `d * sc`, `-(dmin * mn)`, one
/// f32 multiply each (exact); Q6_K's `d` is the super-block's.
#[inline(always)]
unsafe fn block_scales_dm<W: Width, K: Kind>(p: *const u8, s: usize, u: usize) -> (W::F, W::F) {
    // SAFETY: forwarded (see the two functions).
    unsafe { sub_scales::<W, K>(p, s, u, block_f16_scales::<W, K>(p, u)) }
}

/// The f16 scales of unit `u` of the block whose scales are at `p`, as
/// f32: `d` and (with a minimum; else zero) `m`, or a k-quant super-block's
/// `d` and `dmin`, which serve all its sub-blocks ([`sub_scales`]).
#[inline(always)]
unsafe fn block_f16_scales<W: Width, K: Kind>(p: *const u8, u: usize) -> (W::F, W::F) {
    // SAFETY: p points at a block's 16 (or 2 x 16) f16 scales inside a panel.
    unsafe {
        let o = 2 * W::LANES * u;
        let m = if K::MIN {
            W::f16s(p.add(2 * NR + o))
        } else {
            W::zero_f()
        };
        (W::f16s(p.add(o)), m)
    }
}

/// [`block_scales_dm`] of sub-block `s` from its block's f16 scales
/// `(d, m)` as [`block_f16_scales`] converts them (a k-quant super-block's
/// `d` and `dmin`: `d * sc` and `-(dmin * mn)`; other formats: `(d, m)` as
/// they are).
#[inline(always)]
unsafe fn sub_scales<W: Width, K: Kind>(
    p: *const u8,
    s: usize,
    u: usize,
    (d, m): (W::F, W::F),
) -> (W::F, W::F) {
    // SAFETY: p points at a block's scales inside a panel (k-quants: 2 x 16
    // f16, then 2 x 8 x 16 bytes of sub-block scales and minimums).
    unsafe {
        if K::SUBS > 1 && K::MIN {
            let small = p.add(K::SCALES * NR * 2 + W::LANES * u);
            let sc = W::u8s(small.add(s * NR));
            let mn = W::u8s(small.add((K::SUBS + s) * NR));
            return (W::mul(d, sc), W::neg(W::mul(m, mn)));
        }
        (d, m)
    }
}

/// Where [`q_rows`] works: unit `u0` (or every unit) of the panels from `p0`,
/// batch rows from `i0`, blocks `blocks` (whole K, or one pass), raw
/// accumulators in `out` (row stride `ldo`; loaded back when `blocks` does
/// not start at 0), and the pass's [`KeptRows`] codes.
#[derive(Clone)]
struct Rows {
    p0: usize,
    u0: usize,
    i0: usize,
    blocks: Range<usize>,
    out: *mut f32,
    ldo: usize,
    kept: *mut u8,
}

/// What the first row group of a `vpmaddubsw` Q5 pass keeps for the
/// others: the 5-bit codes of one unit, chunk `c` of pass block `j` at
/// slot `8 j + c` (slots of `UNIT_BYTES`; sized for zmm).
type KeptRows = [F32Line; GEMM_KB * 8];

/// The batch-1 prefetch streams of a group of panels: each panel's codes
/// and scales, [`GEMV_PREFETCH`] ahead, and near the end of the rows the
/// first lines of the next group (`np` panels on).
struct Streams {
    /// Bytes from a panel to the same panel of the next group.
    next: usize,
    /// Bytes of a panel's codes (its scales follow at `scales_offset`).
    codes_len: usize,
    scales_offset: usize,
    scales_len: usize,
    /// The first block whose prefetch reaches past the codes, when the
    /// matrix has a whole next group (else `usize::MAX`).
    tail_from: usize,
    /// How far ahead the code lines are also asked for into L1 (widths
    /// with [`Width::Q_GEMV_L1`]; 0: not).
    l1: usize,
}

impl Streams {
    #[inline(always)]
    fn new<K: Kind>(w: &crate::pack::PackedMatrix, p0: usize, np: usize, l1: usize) -> Self {
        let nb = w.blocks_per_row();
        let codes_len = nb * K::CODE_BYTES;
        let tail_from = if p0 + 2 * np <= w.panels() {
            (codes_len.saturating_sub(GEMV_PREFETCH)).div_ceil(K::CODE_BYTES)
        } else {
            usize::MAX
        };
        Streams {
            next: np * w.panel_stride(),
            codes_len,
            scales_offset: w.scales_offset(),
            scales_len: nb.div_ceil(K::SUBS) * K::SCALE_BYTES,
            tail_from,
            l1,
        }
    }

    /// Prefetches what block `b` of `panel` asks for (the code lines
    /// [`GEMV_PREFETCH`] ahead, one scale line, and the next group's lines
    /// from `tail_from` on).
    #[inline(always)]
    fn fetch<W: Width, K: Kind>(&self, panel: *const u8, b: usize) {
        let (cb, sb) = (K::CODE_BYTES, K::SCALE_BYTES);
        let sp = panel.wrapping_add(self.scales_offset + (b / K::SUBS) * sb);
        for l in (0..cb).step_by(64) {
            prefetch(panel.wrapping_add(b * cb + l + GEMV_PREFETCH));
            if W::Q_GEMV_L1 && self.l1 > 0 {
                prefetch_l1(panel.wrapping_add(b * cb + l + self.l1));
            }
        }
        // The scales stream too, as far ahead in blocks as the codes (left
        // to the hardware prefetchers, AVX-512 Q5_0 ran 20% slower); a
        // k-quant super-block's scales span 5 lines, one per sub-block.
        let line = 64 * (b % K::SUBS);
        if line < sb {
            prefetch(sp.wrapping_add(GEMV_PREFETCH * sb / (cb * K::SUBS) + line));
        }
        // The last blocks also start the next group's streams: with short
        // rows every group would otherwise start cold (a decode step's
        // 576-wide matrices, from memory, read 16-25% faster with it).
        if b >= self.tail_from {
            let next = panel.wrapping_add(self.next);
            let o = b * cb + GEMV_PREFETCH - self.codes_len;
            for l in (0..cb).step_by(64) {
                prefetch(next.wrapping_add(o + l));
            }
            if line < sb {
                let os = (b / K::SUBS) * sb + GEMV_PREFETCH * sb / (cb * K::SUBS);
                let at = self.scales_offset + os.saturating_sub(self.scales_len) + line;
                prefetch(next.wrapping_add(at));
            }
        }
    }
}

/// `R` batch rows x every unit (`ALL`) or unit `g.u0` of `NP` panels. With every
/// unit of a panel each code line is read once, in one pass; the `NP`
/// panel streams (codes and scales) are prefetched ahead. `SRC`: where the
/// codes come from (`PANEL_TO_KEPT` also stores them to `g.kept`).
#[inline(always)]
unsafe fn q_rows<
    W: Width,
    D: Dot<W>,
    K: Kind,
    const NP: usize,
    const R: usize,
    const SRC: u8,
    const ALL: bool,
>(
    a: &TileArgs,
    g: &Rows,
) {
    // Every unit of the panels, or unit `u0` alone: a compile-time count, so
    // that the accumulators stay in registers.
    let nu = if ALL { W::UNITS } else { 1 };
    let Rows {
        p0,
        u0,
        i0,
        ref blocks,
        out,
        ldo,
        kept,
    } = *g;
    let w = a.w;
    let nb = w.blocks_per_row();
    let (cb, sb) = (K::CODE_BYTES, K::SCALE_BYTES);
    let so = w.scales_offset();
    let panels: [*const u8; NP] = core::array::from_fn(|i| w.panel(p0 + i).as_ptr());
    // Q4_0 / Q4_1 / Q8_0 with `vpdpbusd`: prefetches after the block's
    // compute, and into L1 too (see `Dot::LATE_PREFETCH`).
    let late = D::LATE_PREFETCH && K::SUBS == 1 && matches!(K::CODES, Codes::Q4 | Codes::Q8);
    let l1 = if late { L1_PREFETCH } else { K::L1_AHEAD };
    let streams = Streams::new::<K>(w, p0, NP, l1);
    // Only the first row group reads the panels from memory; the others
    // (`FROM_PANEL_WARM`, `FROM_KEPT`) find them in L2, so their prefetches
    // would be wasted instructions (`vpmaddubsw` batches, M=128 4096x4096,
    // % of peak: avx512 Q8_0 42.7 -> 45.4, avx2 Q4_K 71.7 -> 77.0). A
    // compile-time choice: decided at run time, the loop kept the prefetch
    // pointers in registers and spilled accumulators (avx2 Q4_0 M=128 +2-3%).
    let fetch = SRC == FROM_PANEL || SRC == PANEL_TO_KEPT;
    debug_assert!(!fetch || i0 == 0);
    // SAFETY: features enabled by the caller; every pointer stays inside its
    // panel (b < nb), acts holds rows i0..i0 + R of nb blocks (driver
    // contract), u0 + nu <= W::UNITS, out holds rows i0..i0 + R of NP * 16
    // values at stride ldo; with SRC PANEL_TO_KEPT or FROM_KEPT, kept is a
    // KeptRows buffer, blocks holds at most GEMM_KB blocks, nu == 1, and a
    // PANEL_TO_KEPT call of the same pass and unit wrote what a FROM_KEPT
    // call reads.
    unsafe {
        let acts = a.acts.as_ptr().add(i0 * nb);
        let col = |i: usize, j: usize| i * NR + W::LANES * (u0 + j);
        let mut acc = [[[W::zero_f(); MAX_UNITS]; NP]; R];
        // Passes of GEMM_KB blocks start on super-block boundaries.
        const { assert!(GEMM_KB.is_multiple_of(K::SUBS)) };
        debug_assert!(blocks.start.is_multiple_of(K::SUBS));
        let mut sup = [[(W::zero_f(), W::zero_f()); MAX_UNITS]; NP];
        if blocks.start > 0 {
            for (r, acc) in acc.iter_mut().enumerate() {
                for (i, v) in acc.iter_mut().enumerate() {
                    for (j, v) in v.iter_mut().enumerate().take(nu) {
                        *v = W::loadu_f(out.add((i0 + r) * ldo + col(i, j)));
                    }
                }
            }
        }
        for b in blocks.clone() {
            let mut act = [&*acts; R];
            for (r, act) in act.iter_mut().enumerate() {
                *act = &*acts.add(r * nb + b);
            }
            let k = kept.wrapping_add((b - blocks.start) * 8 * W::UNIT_BYTES);
            for i in 0..NP {
                let sp = panels[i].add(so + (b / K::SUBS) * sb);
                if fetch && !late {
                    streams.fetch::<W, K>(panels[i], b);
                }
                for j in 0..nu {
                    let u = u0 + j;
                    let codes = if SRC == FROM_KEPT {
                        let mut v = [W::zero_i(); 8];
                        for (c, v) in v.iter_mut().enumerate() {
                            *v = W::load_i(k.add(W::UNIT_BYTES * c));
                        }
                        v
                    } else {
                        let v = load_codes::<W, D, K>(panels[i].add(b * cb), u);
                        if SRC == PANEL_TO_KEPT {
                            for (c, v) in v.iter().enumerate() {
                                W::store_i(k.add(W::UNIT_BYTES * c), *v);
                            }
                        }
                        v
                    };
                    // A super-block's f16 scales, converted once for its
                    // sub-blocks where the registers allow (passes start
                    // on super-block boundaries: asserted above).
                    if !W::KEEP_SUPER_SCALES || b % K::SUBS == 0 {
                        sup[i][j] = block_f16_scales::<W, K>(sp, u);
                    }
                    let (dw, mw) = sub_scales::<W, K>(sp, b % K::SUBS, u, sup[i][j]);
                    let hs = half_scales::<W, K>(sp, b % K::SUBS, u);
                    let isum = block_isums::<W, D, K, R>(&codes, &act, hs);
                    // The activation scales at their use: scalars kept
                    // through the block's dots would take vector registers.
                    for ((acc, act), isum) in acc.iter_mut().zip(&act).zip(isum) {
                        let sa = act_scales::<K>(act);
                        acc[i][j] = accumulate::<W, K>(acc[i][j], dw, mw, sa, isum);
                    }
                }
                if fetch && late {
                    streams.fetch::<W, K>(panels[i], b);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (i, v) in acc.iter().enumerate() {
                for (j, v) in v.iter().enumerate().take(nu) {
                    W::storeu_f(out.add((i0 + r) * ldo + col(i, j)), *v);
                }
            }
        }
    }
}

/// All `R` rows of the tile, every unit of `W::Q_GEMV_PANELS` panels per
/// [`q_rows`] call (batch 1, and batch 2 with `vpmaddubsw`).
#[inline(always)]
unsafe fn q_gemv<W: Width, D: Dot<W>, K: Kind, const R: usize>(
    a: &TileArgs,
    out: *mut f32,
    ldo: usize,
) {
    let mut p = 0;
    while p < a.np {
        let n = (a.np - p).min(W::Q_GEMV_PANELS);
        let g = Rows {
            p0: a.p0 + p,
            u0: 0,
            i0: 0,
            blocks: 0..a.w.blocks_per_row(),
            // SAFETY: forwarded driver contract; panels p..p + n < np.
            out: unsafe { out.add(p * NR) },
            ldo,
            kept: core::ptr::null_mut(),
        };
        // SAFETY: forwarded driver contract; panels p..p + n < np.
        unsafe {
            with_count!(n, NP in 1, W::Q_GEMV_PANELS => {
                q_rows::<W, D, K, NP, R, FROM_PANEL, true>(a, &g)
            })
        }
        p += n;
    }
}

/// Rows `g.i0..g.i0 + r` (`r <= ROWS`) of one unit: [`q_rows`] with `R = r`.
#[inline(always)]
unsafe fn q_unit_group<W: Width, D: Dot<W>, K: Kind, const SRC: u8, const ROWS: usize>(
    a: &TileArgs,
    g: &Rows,
    r: usize,
) {
    // SAFETY: forwarded contract.
    unsafe {
        with_count!(r, R in min_rows(SRC, ROWS), ROWS => q_rows::<W, D, K, 1, R, SRC, false>(a, g))
    }
}

/// The `vpmaddubsw` batched tile: 2 rows as batch 1 runs (every unit of
/// the panels per pass: measured 25-45% faster than unit by unit from DRAM
/// with ymm); more rows, each unit x groups of up to `ROWS` rows (Q8_0 with
/// more than `ROWS` rows: `Q8_ROWS`, since the sign trick keeps two more
/// vectors live per chunk), whole K. With `KEEP_Q5`, Q5 codes with more
/// than one row group run K in passes of `GEMM_KB` blocks, the first row
/// group of a pass keeping the 5-bit codes it builds for the others (their
/// bit-4 merge costs about as much as the dot of 2 rows).
#[inline(always)]
pub(crate) unsafe fn q_gemm_madd<
    W: Width,
    D: Dot<W>,
    K: Kind,
    const ROWS: usize,
    const Q8_ROWS: usize,
    const KEEP_Q5: bool,
>(
    a: &TileArgs,
    out: *mut f32,
    ldo: usize,
) {
    const { assert!(ROWS <= 8 && Q8_ROWS <= ROWS) };
    // SAFETY: driver contract (tile size, panels, act rows); features enabled by caller.
    unsafe {
        if a.mr == 2 {
            return q_gemv::<W, D, K, 2>(a, out, ldo);
        }
        let rows = if K::NIBBLES || D::Q8_UNSIGNED || a.mr <= ROWS {
            ROWS
        } else {
            Q8_ROWS
        };
        let nb = a.w.blocks_per_row();
        let keep = KEEP_Q5 && K::CODES == Codes::Q5 && a.mr > rows;
        let mut kept = scratch::<KeptRows>();
        let kept = kept.as_mut_ptr() as *mut u8;
        let pass = if keep { GEMM_KB } else { nb };
        for pi in 0..a.np {
            for u in 0..W::UNITS {
                let mut b0 = 0;
                while b0 < nb {
                    let blocks = b0..(b0 + pass).min(nb);
                    b0 = blocks.end;
                    let mut i0 = 0;
                    while i0 < a.mr {
                        let r = (a.mr - i0).min(rows);
                        let g = Rows {
                            p0: a.p0 + pi,
                            u0: u,
                            i0,
                            blocks: blocks.clone(),
                            out: out.add(pi * NR),
                            ldo,
                            kept,
                        };
                        // The first group has `rows` rows when keeping (mr > rows).
                        match (keep, i0) {
                            (false, 0) => q_unit_group::<W, D, K, FROM_PANEL, ROWS>(a, &g, r),
                            (false, _) => q_unit_group::<W, D, K, FROM_PANEL_WARM, ROWS>(a, &g, r),
                            (true, 0) => q_unit_group::<W, D, K, PANEL_TO_KEPT, ROWS>(a, &g, r),
                            (true, _) => q_unit_group::<W, D, K, FROM_KEPT, ROWS>(a, &g, r),
                        }
                        i0 += r;
                    }
                }
            }
        }
    }
}

/// Blocks per pass of a batched tile: the codes of these blocks for the
/// tile's panels (up to 2 x 16 x 384 bytes, or what the kept buffer
/// holds) stay in L1 while every row group of the tile runs over them.
const GEMM_KB: usize = 16;

/// Most units in a `vpdpbusd` register tile (one panel of two ymm halves,
/// or two zmm panels).
const TILE_UNITS: usize = 2;

/// What the first row group of a `vpdpbusd` pass keeps for the others, one
/// slot of `UNIT_BYTES` per unit vector (packed: the L1 footprint is what a
/// pass reads): the split nibble codes (Q5: the 5-bit codes; chunk `c`
/// of pass block `j`, tile unit `t` at slot `(j * TILE_UNITS + t) * 8 + c`),
/// then the widened `d` scales (slot `KEPT_D + j * TILE_UNITS + t`) and `m`
/// (slot `KEPT_M + ..`). Sized for zmm slots.
type Kept = [F32Line; GEMM_KB * TILE_UNITS * 10];
const KEPT_D: usize = GEMM_KB * TILE_UNITS * 8;
const KEPT_M: usize = GEMM_KB * TILE_UNITS * 9;

/// One pass of a batched `vpdpbusd` tile: `P` panels over `blocks`,
/// accumulators in `out` (row stride `ldo`, panel `i` at column `16 i`).
pub(crate) struct Pass<'t, 'a, const P: usize> {
    a: &'t TileArgs<'a>,
    panels: [*const u8; P],
    blocks: Range<usize>,
    out: *mut f32,
    ldo: usize,
    /// A [`Kept`] buffer.
    kept: *mut u8,
}

/// Batched `vpdpbusd` tile: K in passes of `GEMM_KB` blocks; in each pass,
/// register tiles of `PANELS` (1 or 2) panels x groups of up to `ROWS` (<= 6)
/// rows. `ACC_IN_REGS`: whether the f32 accumulators stay in registers
/// through a pass (else each block's results are added to `out`).
#[inline(always)]
pub(crate) unsafe fn q_gemm_vnni<
    W: Width,
    V: Vnni<W>,
    K: Kind,
    const PANELS: usize,
    const ROWS: usize,
    const ACC_IN_REGS: bool,
>(
    a: &TileArgs,
    out: *mut f32,
    ldo: usize,
) {
    const { assert!(PANELS * W::UNITS <= TILE_UNITS && ROWS <= 6) };
    let nb = a.w.blocks_per_row();
    let mut kept = scratch::<Kept>();
    let kept = kept.as_mut_ptr() as *mut u8;
    // Deriving 5-bit codes costs more than storing and reloading them: Q5
    // keeps them as soon as a second row group reads them. Q6 keeps them
    // past KEEP_ROWS only (keeping from 5 rows on measured, avx512vnni
    // 4096x4096, M=5 0.74-0.89 ms against 0.47-0.52, M=8 0.88-1.35 against
    // 0.73; never keeping: avxvnni M=32 and 128 1.5x slower).
    let keep = a.mr
        > if K::CODES == Codes::Q5 {
            ROWS
        } else {
            KEEP_ROWS
        };
    // Panel tile outer, passes inner: each panel stream is read in order
    // (passes outer, alternating between the tile's panel streams, measured
    // AVX-VNNI Q4_0 M=8 4096x4096 15-20% slower).
    let mut pi = 0;
    while pi < a.np {
        let panel = |i: usize| a.w.panel(a.p0 + pi + i).as_ptr();
        let two = const { PANELS == 2 } && a.np - pi >= 2;
        let mut b0 = 0;
        while b0 < nb {
            let blocks = b0..(b0 + GEMM_KB).min(nb);
            b0 = blocks.end;
            // SAFETY: forwarded driver contract; panels pi(+1) < np.
            unsafe {
                let out = out.add(pi * NR);
                if two {
                    let panels = [panel(0), panel(1)];
                    let pass = Pass {
                        a,
                        panels,
                        blocks,
                        out,
                        ldo,
                        kept,
                    };
                    q_vnni_rows::<W, V, K, 2, ROWS, ACC_IN_REGS>(&pass, keep);
                } else {
                    let panels = [panel(0)];
                    let pass = Pass {
                        a,
                        panels,
                        blocks,
                        out,
                        ldo,
                        kept,
                    };
                    q_vnni_rows::<W, V, K, 1, ROWS, ACC_IN_REGS>(&pass, keep);
                }
            }
        }
        pi += if two { 2 } else { 1 };
    }
}

/// Every row of the tile over one pass, `ROWS` at a time.
#[inline(always)]
unsafe fn q_vnni_rows<
    W: Width,
    V: Vnni<W>,
    K: Kind,
    const P: usize,
    const ROWS: usize,
    const ACC: bool,
>(
    pass: &Pass<P>,
    keep: bool,
) {
    let mr = pass.a.mr;
    let mut i0 = 0;
    while i0 < mr {
        let r = (mr - i0).min(ROWS);
        // SAFETY: forwarded driver contract; rows i0..i0+r < mr; the first row
        // group (`ROWS` rows: mr > rows when keeping) fills `kept` before the
        // others read it.
        unsafe {
            match (keep, i0) {
                (false, _) => q_vnni_group::<W, V, K, P, FROM_PANEL, ROWS, ACC>(pass, i0, r),
                (true, 0) => q_vnni_group::<W, V, K, P, PANEL_TO_KEPT, ROWS, ACC>(pass, 0, r),
                (true, _) => q_vnni_group::<W, V, K, P, FROM_KEPT, ROWS, ACC>(pass, i0, r),
            }
        }
        i0 += r;
    }
}

/// Rows `i0..i0 + r` (`r <= ROWS`): [`q_gemm_chunks`] with `R = r`.
#[inline(always)]
unsafe fn q_vnni_group<
    W: Width,
    V: Vnni<W>,
    K: Kind,
    const P: usize,
    const SRC: u8,
    const ROWS: usize,
    const ACC: bool,
>(
    pass: &Pass<P>,
    i0: usize,
    r: usize,
) {
    // SAFETY: forwarded contract.
    unsafe {
        with_count!(r, R in min_rows(SRC, ROWS), ROWS => {
            V::chunks::<K, P, R, SRC, ACC>(pass, i0)
        })
    }
}

/// Every unit of `P` panels x `R` batch rows from `i0` over the pass's
/// blocks, chunk by chunk: each 4-code chunk of the units is loaded once
/// for all rows and each activation broadcast serves all units. Continues
/// the accumulators kept in `out` unless the pass starts at block 0.
#[inline(always)]
pub(crate) unsafe fn q_gemm_chunks<
    W: Width,
    V: Vnni<W>,
    K: Kind,
    const P: usize,
    const R: usize,
    const SRC: u8,
    const ACC: bool,
>(
    pass: &Pass<P>,
    i0: usize,
) {
    let Pass {
        a,
        panels,
        ref blocks,
        out,
        ldo,
        kept,
    } = *pass;
    let nb = a.w.blocks_per_row();
    let (cb, sb) = (K::CODE_BYTES, K::SCALE_BYTES);
    let so = a.w.scales_offset();
    let nu = W::UNITS;
    let q5 = K::CODES == Codes::Q5;
    let col = |i: usize, u: usize| i * NR + u * W::LANES;
    // SAFETY: target features enabled by the caller; rows i0..i0+R < mr exist in
    // acts (driver contract); blocks < nb keep panel pointers in their panels;
    // out rows are in the tile; `kept` lines stay in its buffer (at most
    // GEMM_KB blocks per pass, P * W::UNITS <= TILE_UNITS) and a
    // PANEL_TO_KEPT call wrote the pass's lines before a FROM_KEPT call
    // reads them (q_vnni_rows).
    unsafe {
        let acts = a.acts.as_ptr().add(i0 * nb);
        let out = out.add(i0 * ldo);
        let slot = W::UNIT_BYTES;
        let line = |j: usize, i: usize, u: usize, l: usize| {
            kept.add(((j * TILE_UNITS + i * nu + u) * 8 + l) * slot)
        };
        let scale_line = |base: usize, j: usize, i: usize, u: usize| {
            kept.add((base + j * TILE_UNITS + i * nu + u) * slot) as *mut f32
        };
        let mut acc = [[[W::zero_f(); MAX_UNITS]; P]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            for (i, acc) in acc.iter_mut().enumerate() {
                for (u, acc) in acc.iter_mut().enumerate().take(nu) {
                    let o = out.add(r * ldo + col(i, u));
                    if !ACC && blocks.start == 0 {
                        W::storeu_f(o, W::zero_f());
                    } else if ACC && blocks.start != 0 {
                        *acc = W::loadu_f(o);
                    }
                }
            }
        }
        for b in blocks.clone() {
            if (K::CODES != Codes::Q4 || K::SUBS > 1) && i0 == 0 {
                // The tile's first row group reads the pass's codes from
                // memory: prefetch them ahead as batch 1 does, and the
                // k-quants' scales (not Q4_0 / Q4_1: the hardware prefetchers
                // keep up with their half-size blocks, where this measured 2%
                // slower at 2-4 rows). Measured for Q5 and the k-quants,
                // 14336x4096 M=8, avx512vnni: Q5_0 6.4 -> 2.7-3.0 ms, Q5_K
                // 7.4-7.5 -> 2.5-3.2, Q6_K 4.8-6.1 -> 2.9-3.5, Q4_K 3.6-4.3
                // -> 2.1-2.6; at 4096x4096 equal or faster.
                for &pn in &panels {
                    for l in (0..cb).step_by(64) {
                        prefetch(pn.wrapping_add(b * cb + l + GEMV_PREFETCH));
                    }
                    if K::SUBS > 1 && b % K::SUBS == 0 {
                        let sp = pn.wrapping_add(so + (b / K::SUBS) * sb);
                        for l in (0..sb).step_by(64) {
                            prefetch(sp.wrapping_add(l + GEMV_PREFETCH * sb / (cb * K::SUBS)));
                        }
                    }
                }
            }
            let j = b - blocks.start;
            let mut act = [&*acts; R];
            for (r, act) in act.iter_mut().enumerate() {
                *act = &*acts.add(r * nb + b);
            }
            // Codes are unsigned: those with an offset start at the
            // activation correction, those of formats with a minimum at 0.
            let mut isum = [[[W::zero_i(); MAX_UNITS]; P]; R];
            for (isum, act) in isum.iter_mut().zip(&act) {
                *isum = [[isum_init::<W, V, K>(act); MAX_UNITS]; P];
            }
            // The exact sums as f32 (Q6: combined from the halves).
            let mut fsum = [[[W::zero_f(); MAX_UNITS]; P]; R];
            if K::CODES == Codes::Q6 {
                // Two chains per row and unit, one per half (its own scale);
                // the halves' code vectors come from one loaded chunk.
                let mut isum_hi = [[[W::zero_i(); MAX_UNITS]; P]; R];
                for (h, act) in isum_hi.iter_mut().zip(&act) {
                    *h = [[half_init::<W, K>(act, 1); MAX_UNITS]; P];
                }
                // The high-bit chunks are loaded again for each nibble chunk
                // (from L1): kept in registers through the 4 chunks they
                // pushed the tile's chains out of the register file.
                unroll!(c in 0..4 => {
                    let mut lo = [[W::zero_i(); MAX_UNITS]; P];
                    let mut hi = [[W::zero_i(); MAX_UNITS]; P];
                    for i in 0..P {
                        for u in 0..nu {
                            if SRC == FROM_KEPT {
                                lo[i][u] = W::load_i(line(j, i, u, c));
                                hi[i][u] = W::load_i(line(j, i, u, c + 4));
                                continue;
                            }
                            let o = b * cb + unit_bytes::<W>(u);
                            let [l, h] = W::nibbles(W::load_i(panels[i].add(o + 64 * c)));
                            lo[i][u] = W::with_high2(l, W::load_i(panels[i].add(o + 4 * 64)), c);
                            hi[i][u] = W::with_high2(h, W::load_i(panels[i].add(o + 5 * 64)), c);
                            if SRC == PANEL_TO_KEPT {
                                W::store_i(line(j, i, u, c), lo[i][u]);
                                W::store_i(line(j, i, u, c + 4), hi[i][u]);
                            }
                        }
                    }
                    for r in 0..R {
                        let (a_lo, a_hi) = (
                            W::bcast4(act[r].qs.as_ptr(), c),
                            W::bcast4(act[r].qs.as_ptr(), c + 4),
                        );
                        for i in 0..P {
                            for u in 0..nu {
                                isum[r][i][u] = V::dpbusd(isum[r][i][u], lo[i][u], a_lo);
                                isum_hi[r][i][u] = V::dpbusd(isum_hi[r][i][u], hi[i][u], a_hi);
                            }
                        }
                    }
                });
                for i in 0..P {
                    let sp = panels[i].add(so + (b / K::SUBS) * sb);
                    for u in 0..nu {
                        let hs = half_scales::<W, K>(sp, b % K::SUBS, u);
                        for ((fsum, isum), hi) in fsum.iter_mut().zip(&isum).zip(&isum_hi) {
                            fsum[i][u] = q6_isum::<W>(isum[i][u], hi[i][u], hs);
                        }
                    }
                }
            } else if K::NIBBLES && SRC != FROM_KEPT && W::PAIR_NIBBLES {
                // Both nibbles of a loaded chunk at once (chunks c, c + 4).
                let mut qh = [[W::zero_i(); MAX_UNITS]; P];
                if q5 {
                    for (i, qh) in qh.iter_mut().enumerate() {
                        for (u, qh) in qh.iter_mut().enumerate().take(nu) {
                            *qh = W::load_i(panels[i].add(b * cb + 4 * 64 + unit_bytes::<W>(u)));
                        }
                    }
                }
                unroll!(c in 0..4 => {
                    let mut lo = [[W::zero_i(); MAX_UNITS]; P];
                    let mut hi = [[W::zero_i(); MAX_UNITS]; P];
                    for i in 0..P {
                        for u in 0..nu {
                            let v = W::load_i(panels[i].add(b * cb + 64 * c + unit_bytes::<W>(u)));
                            if q5 {
                                lo[i][u] = W::q5_low(v);
                                hi[i][u] = W::q5_high(v, qh[i][u], c);
                            } else {
                                [lo[i][u], hi[i][u]] = W::nibbles(v);
                            }
                            if SRC == PANEL_TO_KEPT {
                                W::store_i(line(j, i, u, c), lo[i][u]);
                                W::store_i(line(j, i, u, c + 4), hi[i][u]);
                            }
                        }
                    }
                    for (r, isum) in isum.iter_mut().enumerate() {
                        let (a_lo, a_hi) = (
                            W::bcast4(act[r].qs.as_ptr(), c),
                            W::bcast4(act[r].qs.as_ptr(), c + 4),
                        );
                        for i in 0..P {
                            for u in 0..nu {
                                isum[i][u] = V::dpbusd(isum[i][u], lo[i][u], a_lo);
                                isum[i][u] = V::dpbusd(isum[i][u], hi[i][u], a_hi);
                            }
                        }
                    }
                });
            } else if K::NIBBLES && SRC != FROM_KEPT {
                // One code vector per unit at a time (chunk c of 8: the low
                // or high nibbles of loaded chunk c % 4).
                let mut qh = [[W::zero_i(); MAX_UNITS]; P];
                if q5 {
                    for (i, qh) in qh.iter_mut().enumerate() {
                        for (u, qh) in qh.iter_mut().enumerate().take(nu) {
                            *qh = W::load_i(panels[i].add(b * cb + 4 * 64 + unit_bytes::<W>(u)));
                        }
                    }
                }
                unroll!(c in 0..8 => {
                    let mut v = [[W::zero_i(); MAX_UNITS]; P];
                    for i in 0..P {
                        for u in 0..nu {
                            let o = b * cb + 64 * (c % 4) + unit_bytes::<W>(u);
                            let raw = W::load_i(panels[i].add(o));
                            v[i][u] = match (q5, c < 4) {
                                (true, true) => W::q5_low(raw),
                                (true, false) => W::q5_high(raw, qh[i][u], c % 4),
                                (false, _) => W::nibbles(raw)[c / 4],
                            };
                            if SRC == PANEL_TO_KEPT {
                                W::store_i(line(j, i, u, c), v[i][u]);
                            }
                        }
                    }
                    for (r, isum) in isum.iter_mut().enumerate() {
                        let av = W::bcast4(act[r].qs.as_ptr(), c);
                        for i in 0..P {
                            for u in 0..nu {
                                isum[i][u] = V::dpbusd(isum[i][u], v[i][u], av);
                            }
                        }
                    }
                });
            } else {
                unroll!(c in 0..8 => {
                    let mut v = [[W::zero_i(); MAX_UNITS]; P];
                    for (i, v) in v.iter_mut().enumerate() {
                        for (u, v) in v.iter_mut().enumerate().take(nu) {
                            *v = if K::NIBBLES {
                                W::load_i(line(j, i, u, c))
                            } else {
                                W::load_i(panels[i].add(b * cb + 64 * c + unit_bytes::<W>(u)))
                            };
                        }
                    }
                    for (r, isum) in isum.iter_mut().enumerate() {
                        let av = W::bcast4(act[r].qs.as_ptr(), c);
                        for i in 0..P {
                            for u in 0..nu {
                                isum[i][u] = V::dpbusd(isum[i][u], v[i][u], av);
                            }
                        }
                    }
                });
            }
            if K::CODES != Codes::Q6 {
                for (fsum, isum) in fsum.iter_mut().zip(&isum) {
                    for i in 0..P {
                        for u in 0..nu {
                            fsum[i][u] = W::cvt(isum[i][u]);
                        }
                    }
                }
            }
            // The activation scales of every row (`da`, `dsum`), with the
            // accumulators in registers: read once per row, after the integer
            // chains (scalars live through them would take vector
            // registers). With the accumulators in `out` (which the compiler
            // cannot tell apart from `act`) they are broadcast straight from
            // `act` at each use instead: a load per unit, and fewer live
            // registers in the ymm tile (reading them early for formats with
            // a minimum measured 7-14% slower at M=128, avxvnni and avx2).
            let mut sa = [[0.0f32; 2]; R];
            if ACC {
                for (sa, act) in sa.iter_mut().zip(&act) {
                    *sa = act_scales::<K>(act);
                }
            }
            let mut dw = [[W::zero_f(); MAX_UNITS]; P];
            let mut mw = [[W::zero_f(); MAX_UNITS]; P];
            for i in 0..P {
                for u in 0..nu {
                    let (dl, ml) = (scale_line(KEPT_D, j, i, u), scale_line(KEPT_M, j, i, u));
                    if SRC == FROM_KEPT {
                        dw[i][u] = W::load_f(dl);
                        if K::MIN {
                            mw[i][u] = W::load_f(ml);
                        }
                    } else {
                        (dw[i][u], mw[i][u]) = block_scales_dm::<W, K>(
                            panels[i].add(so + (b / K::SUBS) * sb),
                            b % K::SUBS,
                            u,
                        );
                        if SRC == PANEL_TO_KEPT {
                            W::store_f(dl, dw[i][u]);
                            if K::MIN {
                                W::store_f(ml, mw[i][u]);
                            }
                        }
                    }
                }
            }
            for r in 0..R {
                for i in 0..P {
                    for u in 0..nu {
                        let (d, m, s) = (dw[i][u], mw[i][u], fsum[r][i][u]);
                        if ACC {
                            acc[r][i][u] = accumulate::<W, K>(acc[r][i][u], d, m, sa[r], s);
                        } else {
                            let o = out.add(r * ldo + col(i, u));
                            let sa = act_scales::<K>(act[r]);
                            W::storeu_f(o, accumulate::<W, K>(W::loadu_f(o), d, m, sa, s));
                        }
                    }
                }
            }
        }
        if ACC {
            for (r, v) in acc.iter().enumerate() {
                for (i, v) in v.iter().enumerate() {
                    for (u, v) in v.iter().enumerate().take(nu) {
                        W::storeu_f(out.add(r * ldo + col(i, u)), *v);
                    }
                }
            }
        }
    }
}

/// A block format's tile: batch 1 here, batches as the dot says.
#[inline(always)]
pub(crate) unsafe fn q_tile<W: Width, D: Dot<W>, K: Kind>(a: &mut TileArgs) {
    let ldo = a.np * NR;
    let out = a.tile.as_mut_ptr();
    // SAFETY: driver contract (tile size, panels, act rows); features enabled by caller.
    unsafe {
        if a.mr == 1 {
            q_gemv::<W, D, K, 1>(a, out, ldo);
        } else {
            D::gemm_tile::<K>(a, out, ldo);
        }
    }
}

/// Consecutive cache lines to prefetch, one per k-step: step `s < count`
/// fetches the line at `base + 64 s` (a row group's next chunk of packed x).
#[derive(Clone, Copy)]
pub(crate) struct Lines {
    base: *const u8,
    count: usize,
}

const NO_LINES: Lines = Lines {
    base: core::ptr::null(),
    count: 0,
};

/// Weights of one k-chunk for `P` panels: pointers to the chunk's first
/// step, `step` bytes between k-steps; 16 values of the chunk kernel's
/// element `E` per step (widened as used), unit `u` at `u * LANES` values.
#[derive(Clone, Copy)]
pub(crate) struct ChunkW<const P: usize> {
    w: [*const u8; P],
    step: usize,
    /// With `KEEP`, where to also store the widened weights (step `s`,
    /// panel `i` at `(s * P + i) * 16`) for the row groups that follow.
    keep: *mut f32,
}

/// `R` batch rows x `P` panels over `kc` k-steps; `x` holds the rows' values for
/// these steps at stride `xs`. Continues the accumulators kept in `out`
/// (row stride `ldo`, panel `i` at column `16 i`) unless `first`.
/// `S`: the weights stream from memory (prefetch them ahead as batch 1
/// does). `pf`: lines to prefetch into L2 meanwhile (see [`Lines`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn f_chunk<
    W: Width,
    E: FloatKind,
    const P: usize,
    const R: usize,
    const S: bool,
    const KEEP: bool,
>(
    cw: ChunkW<P>,
    x: *const f32,
    xs: usize,
    kc: usize,
    out: *mut f32,
    ldo: usize,
    first: bool,
    pf: Lines,
) {
    let nu = W::UNITS;
    let ub = W::LANES * core::mem::size_of::<E>();
    let col = |i: usize, u: usize| i * NR + u * W::LANES;
    // SAFETY: features enabled by the caller; x holds R rows of kc values at
    // stride xs, each cw.w[i] holds kc steps, out holds R rows at stride
    // ldo, and with KEEP cw.keep holds kc * P * 16 values (f_gemm's buffer,
    // 64-byte aligned).
    unsafe {
        let mut acc = [[[W::zero_f(); MAX_UNITS]; P]; R];
        if !first {
            for (r, acc) in acc.iter_mut().enumerate() {
                for (i, acc) in acc.iter_mut().enumerate() {
                    for (u, acc) in acc.iter_mut().enumerate().take(nu) {
                        *acc = W::loadu_f(out.add(r * ldo + col(i, u)));
                    }
                }
            }
        }
        for s in 0..kc {
            if s < pf.count {
                let line = pf.base.wrapping_add(64 * s);
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T1 }>(
                    line as *const i8,
                );
            }
            let w: [*const u8; P] = core::array::from_fn(|i| cw.w[i].wrapping_add(s * cw.step));
            if S {
                for w in w {
                    prefetch(w.wrapping_add(GEMV_PREFETCH));
                }
            }
            // Registers: with more units than rows (batch 1, AVX2's few
            // rows) broadcast every row's x first and load each weight
            // vector as it is used; else load the weight vectors first and
            // broadcast one x at a time (AVX-512's 2 x 12 tile).
            if P * nu > R {
                let mut xv = [W::zero_f(); R];
                for (r, xv) in xv.iter_mut().enumerate() {
                    *xv = W::splat_f(*x.add(r * xs + s));
                }
                for i in 0..P {
                    for u in 0..nu {
                        let wv = W::widen::<E>(w[i].add(u * ub));
                        if KEEP {
                            W::store_f(cw.keep.add((s * P + i) * NR + u * W::LANES), wv);
                        }
                        for (acc, xv) in acc.iter_mut().zip(&xv) {
                            acc[i][u] = W::fmadd(wv, *xv, acc[i][u]);
                        }
                    }
                }
                continue;
            }
            let mut wv = [[W::zero_f(); MAX_UNITS]; P];
            for (i, wv) in wv.iter_mut().enumerate() {
                for (u, wv) in wv.iter_mut().enumerate().take(nu) {
                    *wv = W::widen::<E>(w[i].add(u * ub));
                    if KEEP {
                        W::store_f(cw.keep.add((s * P + i) * NR + u * W::LANES), *wv);
                    }
                }
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = W::splat_f(*x.add(r * xs + s));
                for i in 0..P {
                    for u in 0..nu {
                        acc[i][u] = W::fmadd(wv[i][u], xv, acc[i][u]);
                    }
                }
            }
        }
        for (r, v) in acc.iter().enumerate() {
            for (i, v) in v.iter().enumerate() {
                for (u, v) in v.iter().enumerate().take(nu) {
                    W::storeu_f(out.add(r * ldo + col(i, u)), *v);
                }
            }
        }
    }
}

/// The weights of `P` panels from `p`, k-steps from `k0`, as the FMA loop
/// streams them from the panels (widened there), storing the f32 to
/// `keep` unless it is null.
///
/// # Safety
/// `p + P <= a.w.panels()` and `k0 < a.w.k()`.
#[inline(always)]
unsafe fn panel_chunk<E: FloatKind, const P: usize>(
    a: &TileArgs,
    p: usize,
    k0: usize,
    keep: *mut f32,
) -> ChunkW<P> {
    // SAFETY: (caller) the panels exist and hold step k0 (E::STEP bytes per step).
    unsafe {
        ChunkW {
            w: core::array::from_fn(|i| a.w.panel(p + i).as_ptr().add(k0 * E::STEP)),
            step: E::STEP,
            keep,
        }
    }
}

/// Where the tile's rows hold k-step `k0` (a multiple of `F16_KC`), and
/// their stride: packed x when the driver packed it, else the rows as given.
///
/// # Safety
/// `k0 < a.w.k()`.
#[inline(always)]
unsafe fn chunk_x(a: &TileArgs, k0: usize) -> (*const f32, usize) {
    // SAFETY: k0 < k, inside x (and inside xp, which holds every chunk).
    unsafe {
        if a.xp.is_empty() {
            (a.x.as_ptr().add(k0), a.w.k())
        } else {
            (a.xp.as_ptr().add(k0 * a.mr), F16_KC)
        }
    }
}

/// All `R` rows x `P` panels from `p`, k-steps `k0..k0 + kc`, weights
/// streamed from the panels: [`f_chunk`] without keeping.
#[inline(always)]
unsafe fn f_stream<W: Width, E: FloatKind, const P: usize, const R: usize>(
    a: &TileArgs,
    p: usize,
    k0: usize,
    kc: usize,
    out: *mut f32,
) {
    // SAFETY: (caller) driver contract; panels p..p + P exist, k0 + kc <= k.
    unsafe {
        let (x, xs) = chunk_x(a, k0);
        let cw = panel_chunk::<E, P>(a, p, k0, core::ptr::null_mut());
        W::f_chunk::<E, P, R, true, false>(cw, x, xs, kc, out, a.np * NR, k0 == 0, NO_LINES);
    }
}

/// [`f_stream`] with `R = a.mr` (the whole-K path: up to `F_WHOLE_K_ROWS`).
#[inline(always)]
unsafe fn f_stream_few<W: Width, E: FloatKind, const P: usize>(
    a: &TileArgs,
    p: usize,
    k0: usize,
    kc: usize,
    out: *mut f32,
) {
    // SAFETY: forwarded contract.
    unsafe {
        with_count!(a.mr, R in 1, W::F_WHOLE_K_ROWS => f_stream::<W, E, P, R>(a, p, k0, kc, out))
    }
}

/// [`f_stream`] with `R = a.mr` (K chunk by chunk: more than
/// `F_WHOLE_K_ROWS`, up to `F_STREAM_ROWS`).
#[inline(always)]
unsafe fn f_stream_rows<W: Width, E: FloatKind, const P: usize>(
    a: &TileArgs,
    p: usize,
    k0: usize,
    kc: usize,
    out: *mut f32,
) {
    // SAFETY: forwarded contract.
    unsafe {
        with_count!(a.mr, R in W::F_WHOLE_K_ROWS + 1, W::F_STREAM_ROWS => {
            f_stream::<W, E, P, R>(a, p, k0, kc, out)
        })
    }
}

/// `r` rows of a larger float batch: [`f_chunk`] with `R = r` (`S`: from
/// the panels, `KEEP`: keeping the widened weights).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn f_group<W: Width, E: FloatKind, const P: usize, const S: bool, const KEEP: bool>(
    cw: ChunkW<P>,
    x: *const f32,
    r: usize,
    kc: usize,
    out: *mut f32,
    ldo: usize,
    first: bool,
    pf: Lines,
) {
    // SAFETY: forwarded contract (f_chunk's, with x at stride F16_KC).
    unsafe {
        let xs = F16_KC;
        with_count!(r, R in f_group_min_rows::<W>(), W::F_ROWS => {
            W::f_chunk::<E, P, R, S, KEEP>(cw, x, xs, kc, out, ldo, first, pf)
        })
    }
}

/// The fewest rows of an [`f_gemm`] row group: over every tile height it
/// runs (`F_STREAM_ROWS < mr <= MAX_TILE_ROWS`), the balanced split into
/// groups of at most `F_ROWS`.
const fn f_group_min_rows<W: Width>() -> usize {
    let mut min = W::F_ROWS;
    let mut mr = W::F_STREAM_ROWS + 1;
    while mr <= MAX_TILE_ROWS {
        let mut groups = mr.div_ceil(W::F_ROWS);
        let mut i0 = 0;
        while i0 < mr {
            let r = (mr - i0).div_ceil(groups);
            if r < min {
                min = r;
            }
            i0 += r;
            groups -= 1;
        }
        mr += 1;
    }
    min
}

/// All `mr` rows of `P` adjacent panels starting at panel `p`, k-steps
/// `k0..k0 + kc` (at most `F16_KC`), in balanced row groups of at most
/// `W::F_ROWS`: the first streams the weights from the panels (widens them)
/// as it computes and keeps the f32 in an aligned L1 buffer, the others
/// read them there. `prefetch_x`: the next chunk's first step when this
/// call should prefetch the rows' x for it.
#[inline(always)]
unsafe fn f_gemm<W: Width, E: FloatKind, const P: usize>(
    a: &TileArgs,
    p: usize,
    k0: usize,
    kc: usize,
    out: *mut f32,
    prefetch_x: Option<usize>,
) {
    let ldo = a.np * NR;
    let mut buf = scratch::<[F32Line; F16_KC * NR * 2 / 16]>();
    let buf = buf.as_mut_ptr() as *mut f32;
    // SAFETY: driver contract (tile size, panels, packed x rows); features
    // enabled by the caller; buf holds F16_KC steps of P <= 2 panels; k0 + kc <= k.
    unsafe {
        debug_assert!(P <= 2 && !a.xp.is_empty());
        let xc = a.xp.as_ptr().add(k0 * a.mr);
        let kept = ChunkW {
            w: core::array::from_fn(|i| buf.add(i * NR) as *const u8),
            step: P * NR * 4,
            keep: core::ptr::null_mut(),
        };
        let mut groups = a.mr.div_ceil(W::F_ROWS);
        // One group alone keeps nothing; F32 weights need no widening, and
        // on ymm reading them from the panel again costs less than the copy.
        let keep = groups > 1 && (E::KIND != Float::F32 || W::F_KEEP_F32);
        let mut i0 = 0;
        while i0 < a.mr {
            let r = (a.mr - i0).div_ceil(groups);
            // On a chunk's last panels, each row group prefetches its rows' next
            // x chunk: r packed rows of F16_KC floats, 8 lines each.
            let pf = match prefetch_x {
                Some(nk0) => Lines {
                    base: a.xp.as_ptr().wrapping_add(nk0 * a.mr + i0 * F16_KC) as *const u8,
                    count: F16_KC * 4 / 64 * r,
                },
                None => NO_LINES,
            };
            let (x, o, first) = (xc.add(i0 * F16_KC), out.add(i0 * ldo), k0 == 0);
            if !keep {
                let src = panel_chunk::<E, P>(a, p, k0, core::ptr::null_mut());
                f_group::<W, E, P, true, false>(src, x, r, kc, o, ldo, first, pf);
            } else if i0 == 0 {
                let src = panel_chunk::<E, P>(a, p, k0, buf);
                f_group::<W, E, P, true, true>(src, x, r, kc, o, ldo, first, pf);
            } else {
                f_group::<W, f32, P, false, false>(kept, x, r, kc, o, ldo, first, pf);
            }
            i0 += r;
            groups -= 1;
        }
    }
}

/// A float format's tile.
#[inline(always)]
pub(crate) unsafe fn f_tile<W: Width, E: FloatKind>(a: &mut TileArgs) {
    let k = a.w.k();
    let out = a.tile.as_mut_ptr();
    debug_assert!(a.mr <= MAX_TILE_ROWS);
    // SAFETY: driver contract (tile size, panels, x rows); features enabled by caller.
    unsafe {
        if a.mr <= W::F_WHOLE_K_ROWS {
            // Panel by panel over the whole of K: each panel stream is read
            // in order and prefetched ahead (one stream alone leaves memory
            // bandwidth unused, so batch 1 runs 4 at once).
            let per = if a.mr == 1 { 4 } else { 2 };
            let mut p = 0;
            while p < a.np {
                let n = (a.np - p).min(per);
                let o = out.add(p * NR);
                let mut k0 = 0;
                while k0 < k {
                    let kc = (k - k0).min(F16_KC);
                    let q = a.p0 + p;
                    match n {
                        1 => f_stream_few::<W, E, 1>(a, q, k0, kc, o),
                        2 => f_stream_few::<W, E, 2>(a, q, k0, kc, o),
                        3 => f_stream_few::<W, E, 3>(a, q, k0, kc, o),
                        _ => f_stream_few::<W, E, 4>(a, q, k0, kc, o),
                    }
                    k0 += kc;
                }
                p += n;
            }
            return;
        }
        // K-chunk outer: the rows' x values of a chunk are read from cache by
        // every panel group of the tile, not streamed again per group. x comes
        // packed (rows of a chunk at stride F16_KC: constant displacements
        // for the broadcasts, no cache-set conflicts between rows).
        let mut k0 = 0;
        while k0 < k {
            let kc = (k - k0).min(F16_KC);
            let mut p = 0;
            while p < a.np {
                let o = out.add(p * NR);
                let q = a.p0 + p;
                if a.mr <= W::F_STREAM_ROWS {
                    // Few rows: streaming the weights beats staging them
                    // (a store and reload per weight for a single use, and
                    // loads from memory serialized ahead of the compute).
                    if a.np - p >= 2 {
                        f_stream_rows::<W, E, 2>(a, q, k0, kc, o);
                    } else {
                        f_stream_rows::<W, E, 1>(a, q, k0, kc, o);
                    }
                    p += 2;
                    continue;
                }
                let two = const { W::F_PANELS == 2 } && a.np - p >= 2;
                let pfx = (p + W::F_PANELS >= a.np && k0 + kc < k).then_some(k0 + kc);
                if two {
                    f_gemm::<W, E, 2>(a, q, k0, kc, o, pfx);
                    p += 2;
                } else {
                    f_gemm::<W, E, 1>(a, q, k0, kc, o, pfx);
                    p += 1;
                }
            }
            k0 += kc;
        }
    }
}
