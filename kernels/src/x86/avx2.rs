//! AVX2 (+FMA, F16C) and AVX-VNNI: the x86 tiles ([`super::tiles`]) on
//! 256-bit registers, a 16-row panel being two ymm units of 8 rows, with
//! `vpmaddubsw` + `vpmaddwd` or AVX-VNNI's VEX `vpdpbusd` as the integer
//! dot. Tiling for 16 registers:
//! - `vpmaddubsw` batches: one unit x 4 rows (Q8_0 beyond 4 rows: 3, its
//!   sign trick keeps two more vectors live per chunk); Q5 with more than
//!   one row group keeps the 5-bit codes of a 16-block pass for the others;
//! - `vpdpbusd` batches: one panel (both units) x 5 rows, 10 integer
//!   chains, the f32 accumulators in the output tile;
//! - float batches of up to 3 rows stream the panels over the whole of K;
//!   larger ones run one panel x up to 6 rows per K-chunk.

use super::simd::{q4_block_in_place, Dot, Float, FloatKind, Kind, Vnni, Width};
use super::tiles::{f_tile, q_gemm_madd, q_gemm_vnni, q_tile};
use crate::act::{block_scales, ActBlock};
use crate::formats::QK;
use crate::TileArgs;
use core::arch::asm;
use core::arch::x86_64::*;

/// 256-bit registers.
pub(crate) struct Ymm;

impl Width for Ymm {
    row_groups!(floats: Ymm, crate::Isa::Avx2, "avx2,fma,f16c");

    type I = __m256i;
    type F = __m256;
    const LANES: usize = 8;
    const PAIR_NIBBLES: bool = false;
    const Q_GEMV_PANELS: usize = 2;
    const Q_GEMV_L1: bool = false;
    const KEEP_SUPER_SCALES: bool = false;
    const F_WHOLE_K_ROWS: usize = 3;
    const F_STREAM_ROWS: usize = 3;
    const F_PANELS: usize = 1;
    const F_KEEP_F32: bool = false;
    const F_ROWS: usize = 6;

    #[inline(always)]
    unsafe fn zero_i() -> __m256i {
        // SAFETY: the kernel enables avx2, fma, f16c; pointers as the trait says.
        unsafe { _mm256_setzero_si256() }
    }
    #[inline(always)]
    unsafe fn zero_f() -> __m256 {
        // SAFETY: the kernel enables avx2, fma, f16c; pointers as the trait says.
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat_i(x: i32) -> __m256i {
        // SAFETY: the kernel enables avx2, fma, f16c; pointers as the trait says.
        unsafe { _mm256_set1_epi32(x) }
    }
    #[inline(always)]
    unsafe fn splat_f(x: f32) -> __m256 {
        // SAFETY: the kernel enables avx2, fma, f16c; pointers as the trait says.
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn bcast4(a: *const i8, c: usize) -> __m256i {
        // SAFETY: the kernel enables avx2, fma, f16c; pointers as the trait says.
        unsafe { _mm256_set1_epi32((a.add(4 * c) as *const i32).read_unaligned()) }
    }
    #[inline(always)]
    unsafe fn load_i(p: *const u8) -> __m256i {
        // SAFETY: the kernel enables avx2, fma, f16c; pointers as the trait says.
        unsafe { _mm256_load_si256(p as *const __m256i) }
    }
    #[inline(always)]
    unsafe fn store_i(p: *mut u8, v: __m256i) {
        // SAFETY: the kernel enables avx2, fma, f16c; pointers as the trait says.
        unsafe { _mm256_store_si256(p as *mut __m256i, v) }
    }
    #[inline(always)]
    unsafe fn load_f(p: *const f32) -> __m256 {
        // SAFETY: the kernel enables avx2, fma, f16c; pointers as the trait says.
        unsafe { _mm256_load_ps(p) }
    }
    #[inline(always)]
    unsafe fn store_f(p: *mut f32, v: __m256) {
        // SAFETY: the kernel enables avx2, fma, f16c; pointers as the trait says.
        unsafe { _mm256_store_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn loadu_f(p: *const f32) -> __m256 {
        // SAFETY: the kernel enables avx2, fma, f16c; pointers as the trait says.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn storeu_f(p: *mut f32, v: __m256) {
        // SAFETY: the kernel enables avx2, fma, f16c; pointers as the trait says.
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: the kernel enables avx2, fma, f16c; pointers as the trait says.
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        // SAFETY: the kernel enables avx2, fma, f16c; pointers as the trait says.
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn cvt(v: __m256i) -> __m256 {
        // SAFETY: the kernel enables avx2, fma, f16c; pointers as the trait says.
        unsafe { _mm256_cvtepi32_ps(v) }
    }
    #[inline(always)]
    unsafe fn f16s(p: *const u8) -> __m256 {
        // SAFETY: the kernel enables avx2, fma, f16c; pointers as the trait says.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }
    #[inline(always)]
    unsafe fn u8s(p: *const u8) -> __m256 {
        // SAFETY: the kernel enables avx2; 8 bytes at p, as the trait says.
        unsafe { _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i))) }
    }
    #[inline(always)]
    unsafe fn neg(v: __m256) -> __m256 {
        // SAFETY: the kernel enables avx2.
        unsafe { _mm256_xor_ps(v, _mm256_set1_ps(-0.0)) }
    }
    #[inline(always)]
    unsafe fn widen<E: FloatKind>(p: *const u8) -> __m256 {
        // SAFETY: the kernel enables avx2, fma, f16c; pointers as the trait says.
        unsafe {
            match E::KIND {
                Float::F16 => Self::f16s(p),
                Float::BF16 => _mm256_castsi256_ps(_mm256_slli_epi32(
                    _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)),
                    16,
                )),
                Float::F32 => _mm256_loadu_ps(p as *const f32),
            }
        }
    }
    #[inline(always)]
    unsafe fn splat_i8(x: i8) -> __m256i {
        // SAFETY: the kernel enables avx2; pointers as the trait says.
        unsafe { _mm256_set1_epi8(x) }
    }
    #[inline(always)]
    unsafe fn loadu_i(p: *const u8) -> __m256i {
        // SAFETY: the kernel enables avx2; pointers as the trait says.
        unsafe { _mm256_loadu_si256(p as *const __m256i) }
    }
    #[inline(always)]
    unsafe fn add_i32(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: the kernel enables avx2; pointers as the trait says.
        unsafe { _mm256_add_epi32(a, b) }
    }
    #[inline(always)]
    unsafe fn add_i64(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: the kernel enables avx2; pointers as the trait says.
        unsafe { _mm256_add_epi64(a, b) }
    }
    #[inline(always)]
    unsafe fn maddubs_pairs(u: __m256i, a: __m256i) -> __m256i {
        // SAFETY: the kernel enables avx2; pointers as the trait says.
        unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1)) }
    }
    #[inline(always)]
    unsafe fn hsum_u32(v: __m256i) -> u32 {
        let mut lanes = [0u32; 8];
        // SAFETY: the kernel enables avx2; pointers as the trait says.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v) };
        lanes.iter().fold(0u32, |s, &x| s.wrapping_add(x))
    }
    #[inline(always)]
    unsafe fn hsum_u64(v: __m256i) -> u64 {
        let mut lanes = [0u64; 4];
        // SAFETY: the kernel enables avx2; pointers as the trait says.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v) };
        lanes.iter().fold(0u64, |s, &x| s.wrapping_add(x))
    }
    #[inline(always)]
    unsafe fn hsum_f32(v: __m256) -> f32 {
        let mut lanes = [0.0f32; 8];
        // SAFETY: the kernel enables avx2; pointers as the trait says.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        lanes.iter().sum()
    }
    // The register class needs the feature on the function itself; inlined
    // into the loops, whose features include it.
    #[inline]
    #[target_feature(enable = "avx")]
    unsafe fn pin_i(v: &mut __m256i) {
        // SAFETY: the kernel enables avx2; pointers as the trait says.
        unsafe {
            asm!(
                "/* {0} */",
                inout(ymm_reg) * v,
                options(nomem, nostack, preserves_flags)
            )
        }
    }
    // The register class needs the feature on the function itself; inlined
    // into the loops, whose features include it.
    #[inline]
    #[target_feature(enable = "avx")]
    unsafe fn pin_f(v: &mut __m256) {
        // SAFETY: the kernel enables avx2; pointers as the trait says.
        unsafe {
            asm!(
                "/* {0} */",
                inout(ymm_reg) * v,
                options(nomem, nostack, preserves_flags)
            )
        }
    }
    #[inline(always)]
    unsafe fn nibbles(v: __m256i) -> [__m256i; 2] {
        // SAFETY: the kernel enables avx2, fma, f16c; pointers as the trait says.
        unsafe {
            let m = _mm256_set1_epi8(0x0F);
            [
                _mm256_and_si256(v, m),
                _mm256_and_si256(_mm256_srli_epi16(v, 4), m),
            ]
        }
    }
    // A constant count: LLVM emits the immediate form.
    #[inline(always)]
    unsafe fn shl16<const N: u32>(v: __m256i) -> __m256i {
        // SAFETY: the kernel enables avx2.
        unsafe { _mm256_sll_epi16(v, _mm_cvtsi32_si128(N as i32)) }
    }
    #[inline(always)]
    unsafe fn shr16<const N: u32>(v: __m256i) -> __m256i {
        // SAFETY: the kernel enables avx2.
        unsafe { _mm256_srl_epi16(v, _mm_cvtsi32_si128(N as i32)) }
    }
    #[inline(always)]
    unsafe fn sra32<const N: u32>(v: __m256i) -> __m256i {
        // SAFETY: the kernel enables avx2.
        unsafe { _mm256_sra_epi32(v, _mm_cvtsi32_si128(N as i32)) }
    }
    #[inline(always)]
    unsafe fn or_and(v: __m256i, h: __m256i, m: __m256i) -> __m256i {
        // SAFETY: the kernel enables avx2.
        unsafe { _mm256_or_si256(v, _mm256_and_si256(h, m)) }
    }
    #[inline(always)]
    unsafe fn and_i(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: the kernel enables avx2.
        unsafe { _mm256_and_si256(a, b) }
    }
    #[inline(always)]
    unsafe fn i8s(p: *const u8) -> __m256i {
        // SAFETY: the kernel enables avx2; 8 bytes at p, as the trait says.
        unsafe { _mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i)) }
    }
}

/// AVX2: `vpmaddubsw` + `vpmaddwd`.
pub(crate) struct Maddubs;

impl Dot<Ymm> for Maddubs {
    const Q8_UNSIGNED: bool = false;

    #[inline(always)]
    unsafe fn nib_block<const PER: usize, const N: usize>(
        init: __m256i,
        codes: &[__m256i; N],
        a: *const i8,
    ) -> __m256i {
        // SAFETY: called from avx2 functions. Pair sums <= 2*15*127 = 3810
        // (Q4): eight of them fit in i16; <= 2*31*127 = 7874 (Q5): four fit
        // (31496); <= 2*63*127 = 16002 (Q6): two fit (32004). So each i16
        // partial sum is exact.
        let per = PER;
        unsafe {
            let ones = _mm256_set1_epi16(1);
            let mut acc = init;
            let mut s16 = _mm256_setzero_si256();
            for (c, &v) in codes.iter().enumerate() {
                let p = _mm256_maddubs_epi16(v, Ymm::bcast4(a, c));
                s16 = if c % per == 0 {
                    p
                } else {
                    _mm256_add_epi16(s16, p)
                };
                if c % per == per - 1 {
                    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(s16, ones));
                }
            }
            acc
        }
    }

    #[inline(always)]
    unsafe fn q8_rows<const R: usize>(
        init: [__m256i; R],
        stored: &[__m256i; 8],
        a: [*const i8; R],
    ) -> [__m256i; R] {
        // SAFETY: called from avx2 functions; each a[j] holds 32 codes. Sign
        // trick: |w| <= 128 as u8 and sign(a, w) in -127..=127 keep every i16
        // pair <= 32512: exact. Chunk-outer, so the signed code and its
        // absolute value are computed once for all rows (measured with 3-row
        // groups, M=128 4096x4096: rows outer 93-100 GOPS, chunk outer
        // 115-124).
        unsafe {
            let ones = _mm256_set1_epi16(1);
            let flip = _mm256_set1_epi8(0x80u8 as i8);
            let mut acc = init;
            for (c, &v) in stored.iter().enumerate() {
                let w = _mm256_xor_si256(v, flip);
                let aw = _mm256_abs_epi8(w);
                for (acc, &a) in acc.iter_mut().zip(&a) {
                    let p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(Ymm::bcast4(a, c), w));
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(p, ones));
                }
            }
            acc
        }
    }

    #[inline(always)]
    unsafe fn gemm_tile<K: Kind>(a: &TileArgs, out: *mut f32, ldo: usize) {
        // SAFETY: forwarded contract; features enabled by the calling kernel.
        // Both units would not fit the 16 registers: one unit x 4 rows
        // (Q8_0 beyond 4 rows: 3; measured, 4096 x 4096: M=128 105-109 ->
        // 117-121 GOPS, M=7 90-93 -> 101-104).
        unsafe { q_gemm_madd::<Ymm, Self, K, 4, 3, true>(a, out, ldo) }
    }
}

/// AVX-VNNI: VEX-encoded `vpdpbusd` (no saturation).
pub(crate) struct VnniVex;

impl Vnni<Ymm> for VnniVex {
    row_groups!(vnni: Ymm, crate::Isa::AvxVnni, "avx2,fma,f16c,avxvnni");

    #[inline(always)]
    unsafe fn dpbusd(acc: __m256i, u: __m256i, a: __m256i) -> __m256i {
        // SAFETY: called from functions enabling avxvnni.
        unsafe { _mm256_dpbusd_avx_epi32(acc, u, a) }
    }
}

impl Dot<Ymm> for VnniVex {
    const Q8_UNSIGNED: bool = true;
    const HIGH_IN_PLACE: bool = true;

    #[inline(always)]
    unsafe fn q4_block(init: __m256i, codes: &[__m256i; 8], a: *const i8) -> __m256i {
        // SAFETY: forwarded (the kernel enables the dot's features).
        unsafe { q4_block_in_place::<Ymm, Self>(init, codes, a) }
    }

    #[inline(always)]
    unsafe fn nib_block<const PER: usize, const N: usize>(
        init: __m256i,
        codes: &[__m256i; N],
        a: *const i8,
    ) -> __m256i {
        // SAFETY: called from functions enabling avxvnni; `a` holds 4 N codes.
        unsafe {
            let mut acc = init;
            for (c, &v) in codes.iter().enumerate() {
                acc = Self::dpbusd(acc, v, Ymm::bcast4(a, c));
            }
            acc
        }
    }

    #[inline(always)]
    unsafe fn q8_rows<const R: usize>(
        init: [__m256i; R],
        stored: &[__m256i; 8],
        a: [*const i8; R],
    ) -> [__m256i; R] {
        // SAFETY: as above; stored codes are q + 128 (offset undone through init).
        let mut acc = init;
        for (acc, &a) in acc.iter_mut().zip(&a) {
            *acc = unsafe { Self::nib_block::<8, 8>(*acc, stored, a) };
        }
        acc
    }

    #[inline(always)]
    unsafe fn gemm_tile<K: Kind>(a: &TileArgs, out: *mut f32, ldo: usize) {
        // SAFETY: forwarded contract; features enabled by the calling kernel.
        // One panel (2 units) x 5 rows: 10 chains; the f32 accumulators do
        // not fit beside them.
        unsafe {
            // Q6 runs two chains per row and unit (one per half): 3 rows.
            if const { K::SUB_GROUPS == 6 } {
                q_gemm_vnni::<Ymm, Self, K, 1, 3, false>(a, out, ldo)
            } else {
                q_gemm_vnni::<Ymm, Self, K, 1, 5, false>(a, out, ldo)
            }
        }
    }
}

/// Activation quantization of one row (canonical rule, 8 lanes at a time).
#[inline(always)]
unsafe fn quantize_row(x: &[f32], offset: i32, out: &mut [ActBlock]) {
    for (b, blk) in out.iter_mut().enumerate() {
        let start = b * QK;
        let len = (x.len() - start).min(QK);
        let mut pad = [0.0f32; QK];
        let src = if len == QK {
            &x[start..start + QK]
        } else {
            pad[..len].copy_from_slice(&x[start..]);
            &pad[..]
        };
        // SAFETY: src holds 32 values; features enabled by the caller.
        unsafe {
            let p = src.as_ptr();
            let v: [__m256; 4] = core::array::from_fn(|i| _mm256_loadu_ps(p.add(8 * i)));
            let mask = _mm256_set1_epi32(0x7FFF_FFFF);
            let abs = |v: __m256| _mm256_and_si256(_mm256_castps_si256(v), mask);
            let m = _mm256_max_epu32(
                _mm256_max_epu32(abs(v[0]), abs(v[1])),
                _mm256_max_epu32(abs(v[2]), abs(v[3])),
            );
            let m = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
            let m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0b01_00_11_10));
            let m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0b10_11_00_01));
            let (d, id) = block_scales(_mm_cvtsi128_si32(m) as u32);
            if id == 0.0 {
                blk.qs = [0; QK];
                blk.set_scales(d, offset, [0, 0]);
                continue;
            }
            let idv = _mm256_set1_ps(id);
            let q: [__m256i; 4] =
                core::array::from_fn(|i| _mm256_cvtps_epi32(_mm256_mul_ps(v[i], idv)));
            // Lanes 0..4 sum elements 0..16, lanes 4..8 elements 16..32.
            let (lo, hi) = (_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
            let s = _mm256_add_epi32(
                _mm256_permute2x128_si256(lo, hi, 0x20),
                _mm256_permute2x128_si256(lo, hi, 0x31),
            );
            let s = _mm256_add_epi32(s, _mm256_shuffle_epi32(s, 0b01_00_11_10));
            let s = _mm256_add_epi32(s, _mm256_shuffle_epi32(s, 0b10_11_00_01));
            let (lo, hi) = (
                _mm256_cvtsi256_si32(s),
                _mm_cvtsi128_si32(_mm256_extracti128_si256(s, 1)),
            );
            blk.set_scales(d, offset, [lo, hi]);
            let p16 = _mm256_packs_epi16(
                _mm256_packs_epi32(q[0], q[1]),
                _mm256_packs_epi32(q[2], q[3]),
            );
            let ordered =
                _mm256_permutevar8x32_epi32(p16, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(blk.qs.as_mut_ptr() as *mut __m256i, ordered);
        }
    }
}

kernel_table!(
    plain,
    crate::Isa::Avx2,
    "avx2,fma,f16c",
    Ymm,
    Maddubs,
    gemv_panels: 4,
    gemm_panels: 2,
    pack_x: true
);
kernel_table!(
    vnni,
    crate::Isa::AvxVnni,
    "avx2,fma,f16c,avxvnni",
    Ymm,
    VnniVex,
    gemv_panels: 4,
    gemm_panels: 2,
    pack_x: true,
    floats_of: plain
);
