//! F16 / BF16 weight panels widened into row-major f32 with AVX-512, for
//! the dequantization of float layers: 16 k-steps x 16 rows at a time,
//! widened exactly (`vcvtph2ps`, or the bf16 bits shifted into place) and
//! transposed in registers in four shuffle stages. The plain-Rust loop of
//! the load clones spends about ten times as many instructions on the
//! transposition (the compiler's permutes of a fixed-size array).

use crate::pack::NR;
use core::arch::x86_64::*;

/// Whether this CPU runs [`widen_panel`].
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// The whole tiles of a float panel as rows: `panel` holds `k` k-steps of
/// [`NR`] 16-bit values (F16 bits, or BF16 bits when `bf16`), `out` the
/// panel's first `rows` rows of `k` f32 (the last panel of a matrix may
/// have fewer than `NR`). Writes columns `0..k / NR * NR` of every row and
/// returns that count; the caller widens the rest. Panics unless
/// `panel.len() == k * NR`, `out.len()` is a whole number of at most `NR`
/// rows, and [`available`].
pub(crate) fn widen_panel(bf16: bool, panel: &[u16], k: usize, out: &mut [f32]) -> usize {
    assert!(available(), "widen_panel: this CPU lacks AVX-512F");
    assert!(
        panel.len() == k * NR && out.len() <= k * NR && k > 0 && out.len().is_multiple_of(k),
        "widen_panel: length mismatch"
    );
    // SAFETY: AVX-512F is present (checked above); the lengths are checked.
    unsafe { widen_tiles(bf16, panel, k, out) };
    k / NR * NR
}

#[target_feature(enable = "avx512f,avx2,f16c")]
unsafe fn widen_tiles(bf16: bool, panel: &[u16], k: usize, out: &mut [f32]) {
    let rows = out.len() / k;
    for t in 0..k / NR {
        let mut r = [_mm512_setzero_ps(); NR];
        for (s, r) in r.iter_mut().enumerate() {
            // SAFETY: k-step `t * NR + s` < k, so its NR values lie inside
            // `panel` (`k * NR` values); `loadu` takes any alignment.
            let h = unsafe { _mm256_loadu_si256(panel.as_ptr().add((t * NR + s) * NR).cast()) };
            *r = if bf16 {
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
            } else {
                _mm512_cvtph_ps(h)
            };
        }
        for (l, row) in transpose(r).into_iter().take(rows).enumerate() {
            // SAFETY: row `l` < rows, columns `t * NR..t * NR + NR` <= k:
            // inside `out` (`rows * k` values).
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(l * k + t * NR), row) };
        }
    }
}

/// The 16 x 16 transpose: lane `l` of result `s` is lane `s` of input `l`.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose(r: [__m512; NR]) -> [__m512; NR] {
    // 32-bit pairs, then 64-bit pairs, within 128-bit lanes: u[4i + j],
    // 128-bit lane q holds lane 4q + j of inputs 4i..4i + 4.
    let mut u = [_mm512_setzero_pd(); NR];
    for i in 0..4 {
        let [a0, a1, a2, a3] = [r[4 * i], r[4 * i + 1], r[4 * i + 2], r[4 * i + 3]];
        let t0 = _mm512_castps_pd(_mm512_unpacklo_ps(a0, a1));
        let t1 = _mm512_castps_pd(_mm512_unpackhi_ps(a0, a1));
        let t2 = _mm512_castps_pd(_mm512_unpacklo_ps(a2, a3));
        let t3 = _mm512_castps_pd(_mm512_unpackhi_ps(a2, a3));
        u[4 * i] = _mm512_unpacklo_pd(t0, t2);
        u[4 * i + 1] = _mm512_unpackhi_pd(t0, t2);
        u[4 * i + 2] = _mm512_unpacklo_pd(t1, t3);
        u[4 * i + 3] = _mm512_unpackhi_pd(t1, t3);
    }
    // Then whole 128-bit lanes: result 4q + j gathers lane q of u[j],
    // u[4 + j], u[8 + j], u[12 + j].
    let mut v = [_mm512_setzero_ps(); NR];
    for (v, u) in v.iter_mut().zip(u) {
        *v = _mm512_castpd_ps(u);
    }
    let u = v;
    let mut out = [_mm512_setzero_ps(); NR];
    for j in 0..4 {
        let v0 = _mm512_shuffle_f32x4::<0x88>(u[j], u[4 + j]);
        let v1 = _mm512_shuffle_f32x4::<0xDD>(u[j], u[4 + j]);
        let w0 = _mm512_shuffle_f32x4::<0x88>(u[8 + j], u[12 + j]);
        let w1 = _mm512_shuffle_f32x4::<0xDD>(u[8 + j], u[12 + j]);
        out[j] = _mm512_shuffle_f32x4::<0x88>(v0, w0);
        out[4 + j] = _mm512_shuffle_f32x4::<0x88>(v1, w1);
        out[8 + j] = _mm512_shuffle_f32x4::<0xDD>(v0, w0);
        out[12 + j] = _mm512_shuffle_f32x4::<0xDD>(v1, w1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 16-bit pattern (NaN payloads, subnormals, both zeros) as F16
    /// and as BF16, in a panel of 4096 k-steps plus a partial tile, whole
    /// and with fewer rows: each output is its value widened exactly (F16C's
    /// bits, the same as `f16::to_f32`), at its row and column.
    #[test]
    fn widens_and_transposes_every_value() {
        if !available() {
            println!("widen_panel: SKIPPED (this CPU lacks AVX-512F)");
            return;
        }
        let k = 65536 / NR + 5;
        let panel: Vec<u16> = (0..k * NR)
            .map(|i| (i as u32 * 40503 % 65536) as u16)
            .collect();
        for bf16 in [false, true] {
            for rows in [NR, 5] {
                let mut out = vec![f32::from_bits(0x7FC0_1234); rows * k];
                assert_eq!(widen_panel(bf16, &panel, k, &mut out), k / NR * NR);
                for l in 0..rows {
                    for kk in 0..k {
                        let got = out[l * k + kk].to_bits();
                        let h = panel[kk * NR + l];
                        let want = match (kk < k / NR * NR, bf16) {
                            // Columns past the whole tiles are left as they were.
                            (false, _) => 0x7FC0_1234,
                            (true, false) => half::f16::from_bits(h).to_f32().to_bits(),
                            (true, true) => (h as u32) << 16,
                        };
                        assert_eq!(
                            got, want,
                            "bf16 {bf16} rows {rows} row {l} k-step {kk}: {h:#06x}"
                        );
                    }
                }
            }
        }
    }
}
