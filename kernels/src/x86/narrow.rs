//! f32 rows narrowed to F16 / BF16 with AVX-512, 16 values per vector.
//!
//! - F16: `vcvtps2ph` rounding to nearest even, the instruction the `half`
//!   crate's conversion calls per 8 values on CPUs with F16C (the same bits,
//!   NaN payloads included).
//! - BF16: ggml's rounding on the bit pattern (`(u + 0x7FFF + ((u >> 16) &
//!   1)) >> 16`, NaN truncated and made quiet with `| 0x40`), as
//!   [`crate::formats::bf16::f32_to_bf16_bits`], then `vpmovdw`. Not
//!   `vcvtneps2bf16`: it flushes subnormal inputs to zero.
//!
//! The load clones' loop measured 7.3 GB/s of f32 for both on the 2-core
//! Xeon (F16 through `half`'s out-of-line call per 8 values).

use super::panel_rows::Avx512;
use core::arch::x86_64::*;

/// `out[i] = x[i]` narrowed (F16 bits, or BF16 bits when `BF16`), for the
/// whole vectors of 16 values; returns how many values it wrote (the
/// caller converts the rest). Panics unless `x.len() == out.len()`.
pub(crate) fn narrow_row<const BF16: bool>(_: Avx512, x: &[f32], out: &mut [u16]) -> usize {
    assert_eq!(x.len(), out.len(), "narrow_row: length mismatch");
    // SAFETY: the token proves the features; the lengths are equal.
    unsafe { narrow::<BF16>(x, out) }
}

/// Values read ahead of the loops (4 KiB): with their few instructions per
/// cache line the loops keep too few loads in flight for one core's read
/// bandwidth, and the hardware prefetcher alone left BF16 at 7.3-7.6 GB/s
/// (8.6-9.9 with this).
const AHEAD: usize = 1024;

#[target_feature(enable = "avx512f,avx512bw,avx2,f16c")]
unsafe fn narrow<const BF16: bool>(x: &[f32], out: &mut [u16]) -> usize {
    if !BF16 {
        let whole = x.len() / 16 * 16;
        for i in (0..whole).step_by(16) {
            // SAFETY: `i + 16 <= whole <= x.len() == out.len()`; unaligned
            // loads and stores; a prefetch never faults (its address may lie
            // past `x`, computed by wrapping arithmetic).
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(x.as_ptr().wrapping_add(i + AHEAD).cast());
                let v = _mm512_loadu_ps(x.as_ptr().add(i));
                let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
                _mm256_storeu_si256(out.as_mut_ptr().add(i).cast(), h);
            }
        }
        return whole;
    }
    // BF16, 32 values at a time: each value's rounded bit pattern in its
    // 32-bit lane, then the upper halves of both vectors' lanes gathered
    // into one by a word permute.
    // Up to the first 64-byte boundary of `out` one value at a time, so
    // that the stores below do not split cache lines.
    let head = ((64 - out.as_ptr() as usize % 64) % 64 / 2).min(x.len());
    for (o, &v) in out[..head].iter_mut().zip(&x[..head]) {
        *o = crate::formats::bf16::f32_to_bf16_bits(v);
    }
    let whole = head + (x.len() - head) / 32 * 32;
    let (one, half_ulp, quiet) = (
        _mm512_set1_epi32(1),
        _mm512_set1_epi32(0x7FFF),
        _mm512_set1_epi32(0x0040_0000),
    );
    // Word 2i + 1 of the pair of vectors (the upper half of lane i).
    let upper = _mm512_set_epi16(
        63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25, 23, 21, 19,
        17, 15, 13, 11, 9, 7, 5, 3, 1,
    );
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn round(v: __m512, one: __m512i, half_ulp: __m512i, quiet: __m512i) -> __m512i {
        let u = _mm512_castps_si512(v);
        // `(u + 0x7FFF + ((u >> 16) & 1))`, or for NaN `u` with its quiet
        // bit set (bit 6 of the upper half).
        let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(u), one);
        let rounded = _mm512_add_epi32(_mm512_add_epi32(u, half_ulp), odd);
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        _mm512_mask_or_epi32(rounded, nan, u, quiet)
    }
    for i in (head..whole).step_by(32) {
        // SAFETY: `i + 32 <= whole <= x.len() == out.len()`; unaligned
        // loads and stores; prefetches as above.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(x.as_ptr().wrapping_add(i + AHEAD).cast());
            _mm_prefetch::<_MM_HINT_T0>(x.as_ptr().wrapping_add(i + AHEAD + 16).cast());
            let a = round(_mm512_loadu_ps(x.as_ptr().add(i)), one, half_ulp, quiet);
            let b = round(
                _mm512_loadu_ps(x.as_ptr().add(i + 16)),
                one,
                half_ulp,
                quiet,
            );
            let h = _mm512_permutex2var_epi16(a, upper, b);
            _mm512_storeu_si512(out.as_mut_ptr().add(i).cast(), h);
        }
    }
    whole
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::bf16::f32_to_bf16_bits;

    /// Every sign and exponent with mantissas that round up, down and to
    /// even, NaN payloads (quiet and signalling), infinities, subnormals.
    fn specials() -> Vec<f32> {
        let mut v = Vec::new();
        for sign in [0u32, 1 << 31] {
            for e in 0..=255u32 {
                for m in [
                    0, 1, 0x0FFF, 0x1000, 0x1001, 0x2000, 0x3000, 0x7FFF, 0x8000, 0x8001, 0x18000,
                    0x40_0000, 0x40_0001, 0x7F_E000, 0x7F_F000, 0x7F_FFFF,
                ] {
                    v.push(f32::from_bits(sign | e << 23 | m));
                }
            }
        }
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        v.extend((0..4099).map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            f32::from_bits(s as u32)
        }));
        v
    }

    #[test]
    fn narrowing_gives_the_scalar_bits() {
        let Some(t) = Avx512::detect() else {
            eprintln!("SKIPPED: this CPU lacks AVX-512F/BW");
            return;
        };
        let x = specials();
        let mut out = vec![0u16; x.len()];
        // Offsets move the BF16 loop's unaligned head.
        for off in [0, 1, 7, 8, 31] {
            let (x, out) = (&x[off..], &mut out[off..]);
            for bf16 in [true, false] {
                out.fill(0xAAAA);
                let done = if bf16 {
                    narrow_row::<true>(t, x, out)
                } else {
                    narrow_row::<false>(t, x, out)
                };
                assert!(
                    done <= x.len() && done + 32 > x.len(),
                    "{done} of {}",
                    x.len()
                );
                for (i, (&o, &v)) in out[..done].iter().zip(x.iter()).enumerate() {
                    // `half`'s conversion in software for F16 (its F16C
                    // path is the instruction under test).
                    let want = if bf16 {
                        f32_to_bf16_bits(v)
                    } else {
                        half::f16::from_f32_const(v).to_bits()
                    };
                    assert_eq!(o, want, "bf16 {bf16}: {:#010x} at {i}", v.to_bits());
                }
                assert!(
                    out[done..].iter().all(|&o| o == 0xAAAA),
                    "wrote past {done}"
                );
            }
        }
    }
}
