//! What the x86 kernels are written over: a register width ([`Width`]:
//! `__m256`/`__m256i` or `__m512`/`__m512i`), an integer block dot
//! ([`Dot`]: `vpmaddubsw` + `vpmaddwd`, or `vpdpbusd` with [`Vnni`]), and
//! what the kernels need to know of a format ([`Kind`], [`FloatKind`],
//! derived from the format table).
//!
//! A 16-row panel is [`Width::UNITS`] registers ("units") of
//! [`Width::LANES`] rows: two ymm halves of 8 rows, or one zmm. In a code
//! chunk (64 bytes: 4 codes of each of 16 rows) unit `u` holds bytes
//! `u * UNIT_BYTES..`; in a block's 16 f16 scales, values `u * LANES..`; in
//! a float k-step, values `u * LANES..`. Every operation here is one or a
//! few instructions, `#[inline(always)]`, and runs inside the
//! `#[target_feature]` entry points of the kernel tables.

use crate::act::ActBlock;
use crate::formats::{FloatElem, PackedBlock, WeightFormat, QK};
use crate::pack::NR;

/// How a block format stores its codes (see [`crate::pack`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codes {
    /// 8 chunks of bytes `q + 128` (Q8_0).
    Q8,
    /// 4 chunks of nibble pairs (Q4_0, Q4_1).
    Q4,
    /// 5 chunks of whole 5-bit codes (Q5_0, Q5_1, Q5_K's sub-blocks; see
    /// [`crate::formats`]' `q5_packed_group`).
    Q5,
    /// As `Q4`, plus two chunks of 2-bit high parts, one per 16-value half
    /// (Q6_K), and a scale per half: `isum = s0 * Σ_lo + s1 * Σ_hi`.
    Q6,
}

/// The code kind of a block format: {Q8, Q4, Q5} x {offset (`isum = raw +
/// corr`), minimum (`isum = raw`, then the `m` term)}, or Q6 (offset 32 per
/// 16-value half, an int8 scale per half), from its [`PackedBlock`] layout.
/// One algorithm serves every block format; the tiles run 32-value
/// (sub-)blocks, so a Q4_K / Q5_K super-block is 8 Q4_1 / Q5_1 blocks whose
/// scales come from its f16 `d`, `dmin` and 6-bit codes, and a Q6_K one 8
/// sub-blocks of 6-bit codes with two int8 scales each.
pub(crate) trait Kind: PackedBlock {
    /// 32-value sub-blocks per block (8 for the k-quants).
    const SUBS: usize = Self::VALUES / QK;
    /// Code lane groups per sub-block.
    const SUB_GROUPS: usize = Self::GROUPS / Self::SUBS;
    const CODES: Codes = match Self::SUB_GROUPS {
        8 => Codes::Q8,
        4 => Codes::Q4,
        5 => Codes::Q5,
        6 => Codes::Q6,
        _ => panic!("unknown code layout"),
    };
    /// Nibble codes (<= 31): split from their chunks, summed as small codes.
    const NIBBLES: bool = !matches!(Self::CODES, Codes::Q8);
    /// A format with a minimum: scales `d` then `m`, and `corr = Σa`.
    const MIN: bool = Self::SCALES == 2;
    /// Code bytes per panel and 32-value (sub-)block.
    const CODE_BYTES: usize = Self::SUB_GROUPS * 64;
    /// Batch 1 (widths with [`Width::Q_GEMV_L1`]): how far ahead (bytes)
    /// each code line is also asked for into L1, besides
    /// [`GEMV_PREFETCH`](super::GEMV_PREFETCH) into L2; 0 for none (see
    /// [`super::L1_PREFETCH`]).
    const L1_AHEAD: usize = match (Self::CODES, Self::SUBS) {
        (Codes::Q8 | Codes::Q6, _) => super::L1_PREFETCH,
        (Codes::Q5, subs) if subs > 1 => super::L1_PREFETCH,
        _ => 0,
    };
    /// Scale bytes per panel and block (16 `d`, then 16 `m`; k-quants: 16
    /// `d`, 16 `dmin`, then their sub-block scale bytes).
    const SCALE_BYTES: usize = crate::pack::scale_bytes::<Self>();
}
impl<B: PackedBlock> Kind for B {}

/// How a float format's stored values become f32.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Float {
    /// `vcvtph2ps`.
    F16,
    /// Zero-extend to 32 bits, shift left by 16 (exact).
    BF16,
    /// As stored.
    F32,
}

/// The float kind of a float format.
pub(crate) trait FloatKind: FloatElem {
    const KIND: Float = match Self::FORMAT {
        WeightFormat::F16 => Float::F16,
        WeightFormat::BF16 => Float::BF16,
        WeightFormat::F32 => Float::F32,
        _ => panic!("not a float format"),
    };
    /// Bytes of one k-step of a panel (16 values).
    const STEP: usize = NR * core::mem::size_of::<Self>();
}
impl<E: FloatElem> FloatKind for E {}

/// A register width: its integer and float vectors and the operations the
/// kernels use on them. `I` holds `LANES` i32 (or `4 LANES` bytes), `F`
/// holds `LANES` f32; lane `r` of a unit is row `r` of that unit.
pub(crate) trait Width {
    type I: Copy;
    type F: Copy;
    /// Rows per register.
    const LANES: usize;
    /// Registers per 16-row panel.
    const UNITS: usize = NR / Self::LANES;
    /// Bytes of one unit in a 64-byte code chunk (and alignment of its loads).
    const UNIT_BYTES: usize = 4 * Self::LANES;
    /// Whether the batched `vpdpbusd` tile splits a loaded nibble chunk into
    /// both its code vectors at once (enough registers for twice the code
    /// vectors beside the integer chains), else one code vector at a time.
    const PAIR_NIBBLES: bool;
    /// Panels per batch-1 pass of block formats.
    const Q_GEMV_PANELS: usize;
    /// Whether batch 1 converts a k-quant super-block's f16 `d` / `dmin`
    /// once for its 8 sub-blocks (32 vector registers hold them), rather than
    /// for each sub-block (with 16, holding them spills: AVX2 Q4_K / Q5_K
    /// measured 4-6% slower).
    const KEEP_SUPER_SCALES: bool;
    /// Whether batch 1 also asks for the code lines of formats with 6 or
    /// more lines per block into L1 ([`Kind::L1_AHEAD`]).
    const Q_GEMV_L1: bool;
    /// Float batches of up to this many rows run panel by panel over the
    /// whole of K, straight from the panels (batch 1: 4 panels, else 2).
    const F_WHOLE_K_ROWS: usize;
    /// Float batches of up to this many rows (and more than
    /// `F_WHOLE_K_ROWS`) run K-chunk by K-chunk, two panels at a time,
    /// straight from the panels.
    const F_STREAM_ROWS: usize;
    /// Larger float batches: panels per register tile and most rows per row
    /// group (the first group of a chunk widens the weights and keeps them).
    const F_PANELS: usize;
    const F_ROWS: usize;
    /// Whether that first group also keeps F32 weights (a copy) for the others.
    const F_KEEP_F32: bool;

    /// [`f_chunk`](super::tiles::f_chunk) with this width's float-tile
    /// features, as a function of its own (`#[inline(never)]`): each row
    /// count of the tiles is optimized apart instead of all of them inlined
    /// into one kernel entry point, whose size made LLVM's loop passes
    /// superlinear (most of the fuzzing build's time: 15 minutes, 770 s of
    /// them loop passes on the AVX-512 entry points). One call per row
    /// group and K chunk costs nothing measurable.
    #[allow(clippy::too_many_arguments)]
    unsafe fn f_chunk<
        E: FloatKind,
        const P: usize,
        const R: usize,
        const S: bool,
        const KEEP: bool,
    >(
        cw: super::tiles::ChunkW<P>,
        x: *const f32,
        xs: usize,
        kc: usize,
        out: *mut f32,
        ldo: usize,
        first: bool,
        pf: super::tiles::Lines,
    );

    unsafe fn zero_i() -> Self::I;
    unsafe fn zero_f() -> Self::F;
    unsafe fn splat_i(x: i32) -> Self::I;
    unsafe fn splat_f(x: f32) -> Self::F;
    /// Activation codes `a[4c..4c + 4]` in every lane.
    unsafe fn bcast4(a: *const i8, c: usize) -> Self::I;
    /// `UNIT_BYTES` bytes at `p`, aligned to `UNIT_BYTES`.
    unsafe fn load_i(p: *const u8) -> Self::I;
    /// Stores to `p`, aligned to `UNIT_BYTES`.
    unsafe fn store_i(p: *mut u8, v: Self::I);
    /// `LANES` f32 at `p`, aligned to `UNIT_BYTES`.
    unsafe fn load_f(p: *const f32) -> Self::F;
    unsafe fn store_f(p: *mut f32, v: Self::F);
    unsafe fn loadu_f(p: *const f32) -> Self::F;
    unsafe fn storeu_f(p: *mut f32, v: Self::F);
    /// `a * b + c`, one rounding.
    unsafe fn fmadd(a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    unsafe fn mul(a: Self::F, b: Self::F) -> Self::F;
    /// i32 to f32, round to nearest even (exact below 2^24).
    unsafe fn cvt(v: Self::I) -> Self::F;
    /// `LANES` f16 at `p` (any alignment), widened exactly.
    unsafe fn f16s(p: *const u8) -> Self::F;
    /// `LANES` bytes at `p` (any alignment), unsigned, as f32 (exact).
    unsafe fn u8s(p: *const u8) -> Self::F;
    /// `-v`, exactly (the sign bit flipped).
    unsafe fn neg(v: Self::F) -> Self::F;
    /// `LANES` values of float format `E` at `p` (any alignment), widened exactly.
    unsafe fn widen<E: FloatKind>(p: *const u8) -> Self::F;
    /// `x` in every byte.
    unsafe fn splat_i8(x: i8) -> Self::I;
    /// `LANES` i32 at `p` (any alignment).
    unsafe fn loadu_i(p: *const u8) -> Self::I;
    unsafe fn add_i32(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn add_i64(a: Self::I, b: Self::I) -> Self::I;
    /// `vpmaddubsw` (u8 x i8 pairs summed to saturating i16) then `vpmaddwd`
    /// with ones (pairs of those to i32): the `vpmaddubsw` dot's step.
    unsafe fn maddubs_pairs(u: Self::I, a: Self::I) -> Self::I;
    /// Wrapping sums of the lanes, as u32 and as u64 words; f32 sum of `v`.
    unsafe fn hsum_u32(v: Self::I) -> u32;
    unsafe fn hsum_u64(v: Self::I) -> u64;
    unsafe fn hsum_f32(v: Self::F) -> f32;
    /// Makes `v` an unknown, changed register value at no run-time cost (an
    /// empty `asm!`), so a benchmark loop keeps its loop-invariant work.
    unsafe fn pin_i(v: &mut Self::I);
    unsafe fn pin_f(v: &mut Self::F);
    /// The low and high nibbles of each byte of `v`.
    unsafe fn nibbles(v: Self::I) -> [Self::I; 2];
    /// A 4-bit chunk's two code vectors for the dot `D`: [`Width::nibbles`],
    /// or with [`Dot::HIGH_IN_PLACE`] the high nibbles left in place.
    #[inline(always)]
    unsafe fn q4_codes<D: Dot<Self>>(v: Self::I) -> [Self::I; 2]
    where
        Self: Sized,
    {
        // SAFETY: features enabled by the calling kernel.
        unsafe {
            if D::HIGH_IN_PLACE {
                [
                    Self::and_i(v, Self::splat_i8(0x0F)),
                    Self::and_i(v, Self::splat_i8(0xF0u8 as i8)),
                ]
            } else {
                Self::nibbles(v)
            }
        }
    }
    /// The 5-bit codes of elements `4c + i` (0..16) of each lane of a
    /// packed Q5 chunk `v` (byte `i`'s bits 0..5: see
    /// [`crate::formats`]' `q5_packed_group`).
    #[inline(always)]
    unsafe fn q5_low(v: Self::I) -> Self::I {
        // SAFETY: features enabled by the calling kernel.
        unsafe { Self::and_i(v, Self::splat_i8(0x1F)) }
    }
    /// The 5-bit codes of elements `16 + 4c + i` of each lane of packed Q5
    /// chunk `c` (0..4) `v`: bits 5..8 of byte `i` as the code's bits 2..5
    /// (masked before the 16-bit shift, so no bits of the next byte come
    /// in), then bits `2c..2c + 2` of byte `i` of the fifth chunk `g4`
    /// below them.
    #[inline(always)]
    unsafe fn q5_high(v: Self::I, g4: Self::I, c: usize) -> Self::I {
        // SAFETY: features enabled by the calling kernel.
        unsafe {
            let top = Self::shr16::<3>(Self::and_i(v, Self::splat_i8(0xE0u8 as i8)));
            let low = match c {
                0 => g4,
                1 => Self::shr16::<2>(g4),
                2 => Self::shr16::<4>(g4),
                _ => Self::shr16::<6>(g4),
            };
            Self::or_and(top, low, Self::splat_i8(0x03))
        }
    }
    /// Nibble codes `v` of chunk `c` (0..4) of a Q6 half with their bits
    /// 4-5 from `h`: bits `2c..2c+2` of each byte (see [`crate::pack`]).
    #[inline(always)]
    unsafe fn with_high2(v: Self::I, h: Self::I, c: usize) -> Self::I {
        // SAFETY: features enabled by the calling kernel.
        unsafe {
            let m = Self::splat_i8(0x30);
            let h = match c {
                0 => Self::shl16::<4>(h),
                1 => Self::shl16::<2>(h),
                2 => h,
                _ => Self::shr16::<2>(h),
            };
            Self::or_and(v, h, m)
        }
    }
    /// Each 16-bit element shifted left (`shl16`) or right (`shr16`) by `N`.
    unsafe fn shl16<const N: u32>(v: Self::I) -> Self::I;
    unsafe fn shr16<const N: u32>(v: Self::I) -> Self::I;
    /// Each i32 element shifted right by `N`, arithmetically.
    unsafe fn sra32<const N: u32>(v: Self::I) -> Self::I;
    /// `a & b`.
    unsafe fn and_i(a: Self::I, b: Self::I) -> Self::I;
    /// `v | (h & m)`.
    unsafe fn or_and(v: Self::I, h: Self::I, m: Self::I) -> Self::I;
    /// `LANES` bytes at `p` (any alignment), signed, as i32.
    unsafe fn i8s(p: *const u8) -> Self::I;
}

/// The exact integer part of a block on one width: `vpmaddubsw` or
/// `vpdpbusd`, with the register tiling of batches that measured fastest for it.
pub(crate) trait Dot<W: Width> {
    /// Whether `q8_rows` works on the unsigned codes (`q + 128`), so that the
    /// accumulators must start at the activation correction.
    const Q8_UNSIGNED: bool;
    /// Whether 4-bit codes come with their high nibbles in place (`v &
    /// 0xF0`, 16 times the code; see [`Dot::q4_block`]): `vpdpbusd` has no
    /// i16 partial sums to overflow, and one mask replaces a shift and a
    /// mask per chunk.
    const HIGH_IN_PLACE: bool = false;
    /// Batch 1: whether the prefetches of a block of Q4_0 / Q4_1 / Q8_0
    /// (the formats with the least arithmetic per line) follow its compute
    /// rather than precede its code loads, and also ask for the lines into
    /// L1 (set for `vpdpbusd` on zmm). Measured on the AMD EPYC (Zen 4),
    /// `bench_report`, 1 thread, 3 alternated runs, GB/s of weights from
    /// memory (14336x4096): AVX-512 VNNI Q4_0 41.3 -> 54.3, Q4_1 49.7 ->
    /// 54.6, Q8_0 36.6 -> 39.6; the L3-held 4096x4096 level or faster.
    /// Likely the demand loads of these fast blocks queued behind the
    /// prefetches (this VM has no counters to show it). `vpmaddubsw`
    /// AVX-512 measured level, AVX2 Q4_0 16% slower, the other formats
    /// level to 8% slower: they keep them early.
    const LATE_PREFETCH: bool = false;
    /// `init + Σ_c Σ_{i<4} codes[c].u8[4r+i] * a[4c+i]` for small codes
    /// (`PER` = 8 for <= 15, 4 for <= 31, 2 for <= 63: the chunks whose
    /// `vpmaddubsw` pair sums fit one i16 partial sum), exactly.
    unsafe fn nib_block<const PER: usize, const N: usize>(
        init: W::I,
        codes: &[W::I; N],
        a: *const i8,
    ) -> W::I;
    /// `nib_block::<8, 8>` of a 4-bit block split by [`Width::q4_codes`]:
    /// with `HIGH_IN_PLACE`, `codes[4..]` hold 16 times the codes (and
    /// their sum is shifted back, exactly: a multiple of 16).
    #[inline(always)]
    unsafe fn q4_block(init: W::I, codes: &[W::I; 8], a: *const i8) -> W::I {
        // SAFETY: forwarded.
        unsafe { Self::nib_block::<8, 8>(init, codes, a) }
    }
    /// For each of `R` activation rows `a[j]`: `init[j] + Σ (q + 128) * a[j]`
    /// if `Q8_UNSIGNED`, else `init[j] + Σ q * a[j]`, exactly. One call per
    /// block for all rows, so that work on the codes alone is done once.
    unsafe fn q8_rows<const R: usize>(
        init: [W::I; R],
        stored: &[W::I; 8],
        a: [*const i8; R],
    ) -> [W::I; R];
    /// The batched part of a block-format tile (`mr > 1`).
    unsafe fn gemm_tile<K: Kind>(a: &crate::TileArgs, out: *mut f32, ldo: usize);
}

/// `vpdpbusd` on a width: four u8 x i8 products summed into each i32 lane,
/// without saturation. The batched VNNI tile is written over it.
pub(crate) trait Vnni<W: Width>: Dot<W> {
    unsafe fn dpbusd(acc: W::I, u: W::I, a: W::I) -> W::I;
    /// [`q_gemm_chunks`](super::tiles::q_gemm_chunks) of one row group: a
    /// function of its own (see [`Width::f_chunk`]).
    unsafe fn chunks<K: Kind, const P: usize, const R: usize, const SRC: u8, const ACC: bool>(
        pass: &super::tiles::Pass<'_, '_, P>,
        i0: usize,
    );
}

/// [`Dot::q4_block`] for `vpdpbusd` dots with [`Dot::HIGH_IN_PLACE`]: two
/// chains of four, the low nibbles from `init`, the high ones (16 times the
/// codes: <= 240, and the chain's |sum| <= 16 * 16 * 15 * 128, no
/// overflow) from zero, shifted back exactly (a multiple of 16).
#[inline(always)]
pub(crate) unsafe fn q4_block_in_place<W: Width, V: Vnni<W>>(
    init: W::I,
    codes: &[W::I; 8],
    a: *const i8,
) -> W::I {
    // SAFETY: features enabled by the calling kernel; `a` holds 32 codes.
    unsafe {
        let (mut lo, mut hi) = (init, W::zero_i());
        for c in 0..4 {
            lo = V::dpbusd(lo, codes[c], W::bcast4(a, c));
            hi = V::dpbusd(hi, codes[c + 4], W::bcast4(a, c + 4));
        }
        W::add_i32(lo, W::sra32::<4>(hi))
    }
}

/// `da`, and for formats with a minimum the block's `dsum = da * (Σa as
/// f32)`, made by the activation quantizer: read from memory, it is a
/// broadcast operand rather than a convert, a multiply and a broadcast per
/// row and block of every tile (avx512vnni M=128 4096x4096: Q4_K 47.0 ->
/// 51.0% of the `vpdpbusd` peak, Q5_1 46.8 -> 49.7).
#[inline(always)]
pub(crate) fn act_scales<K: Kind>(act: &ActBlock) -> [f32; 2] {
    [act.d, if K::MIN { act.dsum } else { 0.0 }]
}
