//! AVX-512 (F/BW/VL) and AVX-512 VNNI: the x86 tiles ([`super::tiles`])
//! on 512-bit registers, one zmm holding the 16 rows of a panel, with
//! `vpmaddubsw` + `vpmaddwd` (BW) or `vpdpbusd` (VNNI) as the integer dot.
//! Tiling for 32 registers:
//! - batch 1 runs 4 panels per pass;
//! - `vpmaddubsw` batches: one panel x 8 rows over whole blocks;
//! - `vpdpbusd` batches: two panels x 6 rows, 12 integer chains, with the
//!   f32 accumulators in registers through a pass (measured: +10-35% over
//!   one panel x 8 rows);
//! - float batches: up to 12 rows stream the panels, two at a time, K-chunk
//!   by K-chunk; more run two panels x 12 rows per K-chunk.

use super::simd::{q4_block_in_place, Dot, Float, FloatKind, Kind, Vnni, Width};
use super::tiles::{f_tile, q_gemm_madd, q_gemm_vnni, q_tile};
use crate::act::{block_scales, ActBlock};
use crate::formats::QK;
use crate::TileArgs;
use core::arch::asm;
use core::arch::x86_64::*;

/// 512-bit registers.
pub(crate) struct Zmm;

impl Width for Zmm {
    row_groups!(floats: Zmm, crate::Isa::Avx512, "avx512f,avx512bw,avx512vl,avx2,fma,f16c");

    type I = __m512i;
    type F = __m512;
    const LANES: usize = 16;
    const PAIR_NIBBLES: bool = true;
    const Q_GEMV_PANELS: usize = 4;
    const Q_GEMV_L1: bool = true;
    const KEEP_SUPER_SCALES: bool = true;
    const F_WHOLE_K_ROWS: usize = 1;
    const F_STREAM_ROWS: usize = 12;
    const F_PANELS: usize = 2;
    const F_KEEP_F32: bool = true;
    const F_ROWS: usize = 12;

    #[inline(always)]
    unsafe fn zero_i() -> __m512i {
        // SAFETY: the kernel enables avx512f/bw/vl; pointers as the trait says.
        unsafe { _mm512_setzero_si512() }
    }
    #[inline(always)]
    unsafe fn zero_f() -> __m512 {
        // SAFETY: the kernel enables avx512f/bw/vl; pointers as the trait says.
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat_i(x: i32) -> __m512i {
        // SAFETY: the kernel enables avx512f/bw/vl; pointers as the trait says.
        unsafe { _mm512_set1_epi32(x) }
    }
    #[inline(always)]
    unsafe fn splat_f(x: f32) -> __m512 {
        // SAFETY: the kernel enables avx512f/bw/vl; pointers as the trait says.
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn bcast4(a: *const i8, c: usize) -> __m512i {
        // SAFETY: the kernel enables avx512f/bw/vl; pointers as the trait says.
        unsafe { _mm512_set1_epi32((a.add(4 * c) as *const i32).read_unaligned()) }
    }
    #[inline(always)]
    unsafe fn load_i(p: *const u8) -> __m512i {
        // SAFETY: the kernel enables avx512f/bw/vl; pointers as the trait says.
        unsafe { _mm512_load_si512(p as *const _) }
    }
    #[inline(always)]
    unsafe fn store_i(p: *mut u8, v: __m512i) {
        // SAFETY: the kernel enables avx512f/bw/vl; pointers as the trait says.
        unsafe { _mm512_store_si512(p as *mut _, v) }
    }
    #[inline(always)]
    unsafe fn load_f(p: *const f32) -> __m512 {
        // SAFETY: the kernel enables avx512f/bw/vl; pointers as the trait says.
        unsafe { _mm512_load_ps(p) }
    }
    #[inline(always)]
    unsafe fn store_f(p: *mut f32, v: __m512) {
        // SAFETY: the kernel enables avx512f/bw/vl; pointers as the trait says.
        unsafe { _mm512_store_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn loadu_f(p: *const f32) -> __m512 {
        // SAFETY: the kernel enables avx512f/bw/vl; pointers as the trait says.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn storeu_f(p: *mut f32, v: __m512) {
        // SAFETY: the kernel enables avx512f/bw/vl; pointers as the trait says.
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: the kernel enables avx512f/bw/vl; pointers as the trait says.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn mul(a: __m512, b: __m512) -> __m512 {
        // SAFETY: the kernel enables avx512f/bw/vl; pointers as the trait says.
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn cvt(v: __m512i) -> __m512 {
        // SAFETY: the kernel enables avx512f/bw/vl; pointers as the trait says.
        unsafe { _mm512_cvtepi32_ps(v) }
    }
    #[inline(always)]
    unsafe fn f16s(p: *const u8) -> __m512 {
        // SAFETY: the kernel enables avx512f/bw/vl; pointers as the trait says.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
    }
    #[inline(always)]
    unsafe fn u8s(p: *const u8) -> __m512 {
        // SAFETY: the kernel enables avx512f; 16 bytes at p, as the trait says.
        unsafe { _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const __m128i))) }
    }
    #[inline(always)]
    unsafe fn neg(v: __m512) -> __m512 {
        // SAFETY: the kernel enables avx512f (integer xor: `_mm512_xor_ps` needs DQ).
        unsafe {
            _mm512_castsi512_ps(_mm512_xor_si512(
                _mm512_castps_si512(v),
                _mm512_set1_epi32(i32::MIN),
            ))
        }
    }
    #[inline(always)]
    unsafe fn widen<E: FloatKind>(p: *const u8) -> __m512 {
        // SAFETY: the kernel enables avx512f/bw/vl; pointers as the trait says.
        unsafe {
            match E::KIND {
                Float::F16 => Self::f16s(p),
                // A bf16 is the high half of its f32: widening is `bits << 16`.
                Float::BF16 => _mm512_castsi512_ps(_mm512_slli_epi32(
                    _mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i)),
                    16,
                )),
                Float::F32 => _mm512_loadu_ps(p as *const f32),
            }
        }
    }
    #[inline(always)]
    unsafe fn splat_i8(x: i8) -> __m512i {
        // SAFETY: the kernel enables avx512f/bw; pointers as the trait says.
        unsafe { _mm512_set1_epi8(x) }
    }
    #[inline(always)]
    unsafe fn loadu_i(p: *const u8) -> __m512i {
        // SAFETY: the kernel enables avx512f/bw; pointers as the trait says.
        unsafe { _mm512_loadu_si512(p as *const _) }
    }
    #[inline(always)]
    unsafe fn add_i32(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: the kernel enables avx512f/bw; pointers as the trait says.
        unsafe { _mm512_add_epi32(a, b) }
    }
    #[inline(always)]
    unsafe fn add_i64(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: the kernel enables avx512f/bw; pointers as the trait says.
        unsafe { _mm512_add_epi64(a, b) }
    }
    #[inline(always)]
    unsafe fn maddubs_pairs(u: __m512i, a: __m512i) -> __m512i {
        // SAFETY: the kernel enables avx512f/bw; pointers as the trait says.
        unsafe { _mm512_madd_epi16(_mm512_maddubs_epi16(u, a), _mm512_set1_epi16(1)) }
    }
    #[inline(always)]
    unsafe fn hsum_u32(v: __m512i) -> u32 {
        // SAFETY: the kernel enables avx512f/bw; pointers as the trait says.
        unsafe { _mm512_reduce_add_epi32(v) as u32 }
    }
    #[inline(always)]
    unsafe fn hsum_u64(v: __m512i) -> u64 {
        // SAFETY: the kernel enables avx512f/bw; pointers as the trait says.
        unsafe { _mm512_reduce_add_epi64(v) as u64 }
    }
    #[inline(always)]
    unsafe fn hsum_f32(v: __m512) -> f32 {
        // SAFETY: the kernel enables avx512f/bw; pointers as the trait says.
        unsafe { _mm512_reduce_add_ps(v) }
    }
    // The register class needs the feature on the function itself; inlined
    // into the loops, whose features include it.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn pin_i(v: &mut __m512i) {
        // SAFETY: the kernel enables avx512f/bw; pointers as the trait says.
        unsafe {
            asm!(
                "/* {0} */",
                inout(zmm_reg) * v,
                options(nomem, nostack, preserves_flags)
            )
        }
    }
    // The register class needs the feature on the function itself; inlined
    // into the loops, whose features include it.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn pin_f(v: &mut __m512) {
        // SAFETY: the kernel enables avx512f/bw; pointers as the trait says.
        unsafe {
            asm!(
                "/* {0} */",
                inout(zmm_reg) * v,
                options(nomem, nostack, preserves_flags)
            )
        }
    }
    #[inline(always)]
    unsafe fn nibbles(v: __m512i) -> [__m512i; 2] {
        // SAFETY: the kernel enables avx512f/bw/vl; pointers as the trait says.
        unsafe {
            let m = _mm512_set1_epi8(0x0F);
            [
                _mm512_and_si512(v, m),
                _mm512_and_si512(_mm512_srli_epi16(v, 4), m),
            ]
        }
    }
    #[inline(always)]
    unsafe fn shl16<const N: u32>(v: __m512i) -> __m512i {
        // SAFETY: the kernel enables avx512f/bw.
        unsafe { _mm512_slli_epi16::<N>(v) }
    }
    #[inline(always)]
    unsafe fn shr16<const N: u32>(v: __m512i) -> __m512i {
        // SAFETY: the kernel enables avx512f/bw.
        unsafe { _mm512_srli_epi16::<N>(v) }
    }
    #[inline(always)]
    unsafe fn sra32<const N: u32>(v: __m512i) -> __m512i {
        // SAFETY: the kernel enables avx512f/bw.
        unsafe { _mm512_srai_epi32::<N>(v) }
    }
    /// One `vpternlogd`: `v | (h & m)` (truth table 0xF8 for a | (b & c)).
    #[inline(always)]
    unsafe fn or_and(v: __m512i, h: __m512i, m: __m512i) -> __m512i {
        // SAFETY: the kernel enables avx512f.
        unsafe { _mm512_ternarylogic_epi32::<0xF8>(v, h, m) }
    }
    #[inline(always)]
    unsafe fn and_i(a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: the kernel enables avx512f.
        unsafe { _mm512_and_si512(a, b) }
    }
    #[inline(always)]
    unsafe fn i8s(p: *const u8) -> __m512i {
        // SAFETY: the kernel enables avx512f; 16 bytes at p, as the trait says.
        unsafe { _mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i)) }
    }
}

/// AVX512-BW: `vpmaddubsw` (u8*i8 pairs to saturating i16) then `vpmaddwd`.
pub(crate) struct Maddubs;

impl Dot<Zmm> for Maddubs {
    const Q8_UNSIGNED: bool = false;

    #[inline(always)]
    unsafe fn nib_block<const PER: usize, const N: usize>(
        init: __m512i,
        codes: &[__m512i; N],
        a: *const i8,
    ) -> __m512i {
        // SAFETY: only called from functions enabling avx512f/bw. Each i16 pair
        // sum is <= 2*15*127 = 3810, so eight of them (30480) fit in i16; with
        // 5-bit codes a pair is <= 2*31*127 = 7874 and only four (31496) fit,
        // with 6-bit codes <= 16002 and two (32004): the i16 sums are
        // widened every PER chunks, exact.
        unsafe {
            let ones = _mm512_set1_epi16(1);
            let per = PER;
            let mut acc = init;
            for (g, group) in codes.chunks_exact(per).enumerate() {
                let mut s16 = _mm512_setzero_si512();
                for (c, &v) in group.iter().enumerate() {
                    let p = _mm512_maddubs_epi16(v, Zmm::bcast4(a, g * per + c));
                    s16 = _mm512_add_epi16(s16, p);
                }
                acc = _mm512_add_epi32(acc, _mm512_madd_epi16(s16, ones));
            }
            acc
        }
    }

    #[inline(always)]
    unsafe fn q8_rows<const R: usize>(
        init: [__m512i; R],
        stored: &[__m512i; 8],
        a: [*const i8; R],
    ) -> [__m512i; R] {
        // SAFETY: only called from functions enabling avx512f/bw; each a[j]
        // holds 32 codes. Sign trick on the signed code w: |w| <= 128 as u8
        // and a*sign(w) in -127..=127, so each i16 pair is <= 2*128*127 =
        // 32512: no saturation, the sum is exact. Chunk-outer: the code-only
        // work is done once for all rows.
        unsafe {
            let ones = _mm512_set1_epi16(1);
            let flip = _mm512_set1_epi8(0x80u8 as i8);
            let mut acc = init;
            for (c, &v) in stored.iter().enumerate() {
                let w = _mm512_xor_si512(v, flip);
                let neg = _mm512_movepi8_mask(w);
                let aw = _mm512_abs_epi8(w);
                for (acc, &a) in acc.iter_mut().zip(&a) {
                    let b = Zmm::bcast4(a, c);
                    let sa = neg_where(b, neg);
                    let p = _mm512_maddubs_epi16(aw, sa);
                    *acc = _mm512_add_epi32(*acc, _mm512_madd_epi16(p, ones));
                }
            }
            acc
        }
    }

    #[inline(always)]
    unsafe fn gemm_tile<K: Kind>(a: &TileArgs, out: *mut f32, ldo: usize) {
        // SAFETY: forwarded contract; features enabled by the calling kernel.
        unsafe { q_gemm_madd::<Zmm, Self, K, 8, 8, false>(a, out, ldo) }
    }
}

/// `b` with the bytes selected by `k` negated: one merge-masked `vpsubb`
/// into `b` itself. Written with `_mm512_mask_sub_epi8`, the compiler split
/// it into an unmasked `vpsubb` and a masked `vmovdqu8` in the Q8_0 tile's
/// unrolled loop: five vector uops per row and chunk instead of four
/// (M=128 4096x4096, 1 thread: 44.8% -> 53.7% of the `vpmaddubsw` peak).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn neg_where(b: __m512i, k: __mmask64) -> __m512i {
    let mut b = b;
    // SAFETY: register-only instruction of the enabled features.
    unsafe {
        asm!(
            "vpsubb {b}{{{k}}}, {z}, {b}",
            b = inout(zmm_reg) b,
            k = in(kreg) k,
            z = in(zmm_reg) _mm512_setzero_si512(),
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    b
}

/// AVX512-VNNI: `vpdpbusd` sums four u8*i8 products into i32 without saturation.
pub(crate) struct Vnni512;

impl Vnni<Zmm> for Vnni512 {
    row_groups!(vnni: Zmm, crate::Isa::Avx512Vnni, "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c");

    #[inline(always)]
    unsafe fn dpbusd(acc: __m512i, u: __m512i, a: __m512i) -> __m512i {
        // SAFETY: called from functions enabling avx512vnni.
        unsafe { _mm512_dpbusd_epi32(acc, u, a) }
    }
}

impl Dot<Zmm> for Vnni512 {
    const Q8_UNSIGNED: bool = true;
    const HIGH_IN_PLACE: bool = true;
    const LATE_PREFETCH: bool = true;

    #[inline(always)]
    unsafe fn q4_block(init: __m512i, codes: &[__m512i; 8], a: *const i8) -> __m512i {
        // SAFETY: forwarded (the kernel enables the dot's features).
        unsafe { q4_block_in_place::<Zmm, Self>(init, codes, a) }
    }

    #[inline(always)]
    unsafe fn nib_block<const PER: usize, const N: usize>(
        init: __m512i,
        codes: &[__m512i; N],
        a: *const i8,
    ) -> __m512i {
        // Eight code vectors run as two chains of four (even and odd
        // chunks), summed at the end: the chain of eight dependent
        // `vpdpbusd` bounded Q5_K at batch 1 (exact integer sums, so the
        // bits are the same). Four (Q6_K's halves) stay one chain, which
        // measured faster there.
        // SAFETY: only called from functions enabling avx512f/bw/vnni; `a` holds 4 N codes.
        unsafe {
            if N < 8 {
                let mut acc = init;
                for (c, &v) in codes.iter().enumerate() {
                    acc = Self::dpbusd(acc, v, Zmm::bcast4(a, c));
                }
                return acc;
            }
            let mut acc = init;
            let mut acc2 = _mm512_setzero_si512();
            for (c, &v) in codes.iter().enumerate() {
                if c % 2 == 0 {
                    acc = Self::dpbusd(acc, v, Zmm::bcast4(a, c));
                } else {
                    acc2 = Self::dpbusd(acc2, v, Zmm::bcast4(a, c));
                }
            }
            _mm512_add_epi32(acc, acc2)
        }
    }

    #[inline(always)]
    unsafe fn q8_rows<const R: usize>(
        init: [__m512i; R],
        stored: &[__m512i; 8],
        a: [*const i8; R],
    ) -> [__m512i; R] {
        // SAFETY: as above; stored codes are u8 = q + 128, so the sum carries
        // +128*Σa, undone through init.
        let mut acc = init;
        for (acc, &a) in acc.iter_mut().zip(&a) {
            *acc = unsafe { Self::nib_block::<8, 8>(*acc, stored, a) };
        }
        acc
    }

    #[inline(always)]
    unsafe fn gemm_tile<K: Kind>(a: &TileArgs, out: *mut f32, ldo: usize) {
        // SAFETY: forwarded contract; features enabled by the calling kernel.
        unsafe {
            // Q6 runs two chains per row and unit (one per half): 2 panels
            // x 4 rows, 16 chains and 8 accumulators.
            if const { K::SUB_GROUPS == 6 } {
                q_gemm_vnni::<Zmm, Self, K, 2, 4, true>(a, out, ldo)
            } else {
                q_gemm_vnni::<Zmm, Self, K, 2, 6, true>(a, out, ldo)
            }
        }
    }
}

/// Activation quantization of one row (canonical rule, 16 lanes at a time).
#[inline(always)]
unsafe fn quantize_row(x: &[f32], offset: i32, out: &mut [ActBlock]) {
    for (b, blk) in out.iter_mut().enumerate() {
        let start = b * QK;
        let len = (x.len() - start).min(QK);
        // SAFETY: masked loads read only x[start..start+len]; features enabled by caller.
        unsafe {
            let m0: __mmask16 = if len >= 16 {
                0xFFFF
            } else {
                (1u32 << len) as u16 - 1
            };
            let m1: __mmask16 = if len >= 32 {
                0xFFFF
            } else if len > 16 {
                ((1u32 << (len - 16)) - 1) as u16
            } else {
                0
            };
            let p = x.as_ptr().add(start);
            let v0 = _mm512_maskz_loadu_ps(m0, p);
            let v1 = _mm512_maskz_loadu_ps(m1, p.add(16));
            let abs_mask = _mm512_set1_epi32(0x7FFF_FFFF);
            let a0 = _mm512_and_si512(_mm512_castps_si512(v0), abs_mask);
            let a1 = _mm512_and_si512(_mm512_castps_si512(v1), abs_mask);
            let amax = _mm512_reduce_max_epu32(_mm512_max_epu32(a0, a1));
            let (d, id) = block_scales(amax);
            if id == 0.0 {
                blk.qs = [0; QK];
                blk.set_scales(d, offset, [0, 0]);
                continue;
            }
            let idv = _mm512_set1_ps(id);
            let q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, idv));
            let q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, idv));
            let (lo, hi) = (_mm512_reduce_add_epi32(q0), _mm512_reduce_add_epi32(q1));
            blk.set_scales(d, offset, [lo, hi]);
            let dst = blk.qs.as_mut_ptr();
            _mm_storeu_si128(dst as *mut __m128i, _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128(dst.add(16) as *mut __m128i, _mm512_cvtepi32_epi8(q1));
        }
    }
}

kernel_table!(
    bw,
    crate::Isa::Avx512,
    "avx512f,avx512bw,avx512vl,avx2,fma,f16c",
    Zmm,
    Maddubs,
    gemv_panels: 4,
    gemm_panels: 8,
    pack_x: true
);
kernel_table!(
    vnni,
    crate::Isa::Avx512Vnni,
    "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    Zmm,
    Vnni512,
    gemv_panels: 4,
    gemm_panels: 8,
    pack_x: true,
    floats_of: bw
);
