//! Weight panels turned back into row-major f32 with AVX-512, for the
//! dequantization of layers: 16 k-steps (columns) of the panel's 16 rows at
//! a time, each column computed for all rows at once (one row per 32-bit
//! lane, as the panel stores them) and the 16 x 16 tile transposed in
//! registers in four shuffle stages. The plain-Rust loops of the load
//! clones spend most of their time on the compiler's permutes of the same
//! tiles (F16 / BF16) or on gathering each row's lanes (k-quants).
//!
//! - F16 / BF16: widened exactly (`vcvtph2ps`, or the bf16 bits shifted
//!   into place).
//! - Q8_0, Q4_K, Q5_K, Q6_K: the arithmetic of the formats' dequantization
//!   in the same order, one column at a time: `q * d` (Q8_0),
//!   `(d * sc) * q - dmin * m` (Q4_K, Q5_K), `(d * sc) * (q - 32)` (Q6_K):
//!   products and differences of f32 that the vector instructions round as
//!   the scalar ones do. The other 32-value formats measured no faster this
//!   way (their plain-Rust loop vectorizes well) and keep it.
//!
//! The other direction, rows into a panel ([`pack_panel`]): 64 bytes of
//! each of the 16 rows at a time, one zmm each, the same register transpose
//! of dwords. 32-bit values (F32 weights, the block formats' lane groups)
//! are then in place; 16-bit ones (F16 / BF16) come out in pairs of k-steps,
//! separated with one word permute.

use crate::formats::{FloatElem, PackedBlock, WeightFormat};
use crate::pack::{scale_bytes, NR};
use core::arch::x86_64::*;

/// Proof that this CPU has the features the loops here enable (AVX-512F /
/// BW, AVX2, F16C): detected once per dequantization, not per panel.
#[derive(Clone, Copy)]
pub(crate) struct Avx512(());

impl Avx512 {
    pub(crate) fn detect() -> Option<Avx512> {
        use std::arch::is_x86_feature_detected as has;
        (has!("avx512f") && has!("avx512bw") && has!("avx2") && has!("f16c")).then_some(Avx512(()))
    }
}

/// Whether `out` is a whole number of at most `NR` rows of `k`.
fn rows_of(out: &[f32], k: usize) -> bool {
    k > 0 && out.len() <= k * NR && out.len().is_multiple_of(k)
}

/// The whole tiles of a float panel as rows: `panel` holds `k` k-steps of
/// [`NR`] values of the float format `E` (F16 / BF16 bits, widened; f32,
/// as they are), `out` the panel's first `rows` rows of `k` f32 (the last
/// panel of a matrix may have fewer than `NR`). Writes columns
/// `0..k / NR * NR` of every row and returns that count; the caller widens
/// the rest. Panics unless `panel.len() == k * NR` and `out` is a whole
/// number of at most `NR` rows.
pub(crate) fn widen_panel<E: FloatElem>(
    _: Avx512,
    panel: &[E],
    k: usize,
    out: &mut [f32],
) -> usize {
    assert!(
        panel.len() == k * NR && rows_of(out, k),
        "widen_panel: length mismatch"
    );
    // SAFETY: the token proves the features; the lengths are checked above.
    unsafe { widen_tiles::<E>(panel, k, out) };
    k / NR * NR
}

#[target_feature(enable = "avx512f,avx2,f16c")]
unsafe fn widen_tiles<E: FloatElem>(panel: &[E], k: usize, out: &mut [f32]) {
    let rows = out.len() / k;
    for t in 0..k / NR {
        let mut r = [_mm512_setzero_ps(); NR];
        for (s, r) in r.iter_mut().enumerate() {
            // SAFETY: k-step `t * NR + s` < k, so its NR values lie inside
            // `panel` (`k * NR` values); `loadu` takes any alignment.
            let p = unsafe { panel.as_ptr().add((t * NR + s) * NR) };
            *r = match E::FORMAT {
                // SAFETY: as above (16 f32).
                WeightFormat::F32 => unsafe { _mm512_loadu_ps(p.cast()) },
                format => {
                    // SAFETY: as above (16 16-bit values).
                    let h = unsafe { _mm256_loadu_si256(p.cast()) };
                    if format == WeightFormat::BF16 {
                        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
                    } else {
                        _mm512_cvtph_ps(h)
                    }
                }
            };
        }
        for (l, row) in transpose(r).into_iter().take(rows).enumerate() {
            // SAFETY: row `l` < rows, columns `t * NR..t * NR + NR` <= k:
            // inside `out` (`rows * k` values).
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(l * k + t * NR), row) };
        }
    }
}

/// Whether [`block_panel`] handles format `B`: the other 32-value formats
/// measured no faster this way than in the load clones' loop.
pub(crate) const fn has_block_panel<B: PackedBlock>() -> bool {
    matches!(
        B::FORMAT,
        WeightFormat::Q8_0 | WeightFormat::Q4_K | WeightFormat::Q5_K | WeightFormat::Q6_K
    )
}

/// The whole blocks of a panel of block format `B` (one of
/// [`has_block_panel`]'s) as rows: `panel` is one panel of a matrix of `k`
/// columns whose scales start at `so` ([`crate::pack`]'s layout), `out` its
/// first `out.len() / k` rows (at most `NR`). Writes the columns of the
/// whole blocks (`k / B::VALUES * B::VALUES`) of every row and returns that
/// count; the caller dequantizes the rest. Panics for other formats and
/// unless the panel holds
/// `k.div_ceil(B::VALUES)` blocks of codes and of scales from `so`, and
/// `out` is a whole number of at most `NR` rows.
pub(crate) fn block_panel<B: PackedBlock>(
    _: Avx512,
    panel: &[u8],
    so: usize,
    k: usize,
    out: &mut [f32],
) -> usize {
    // A constant per format (its arithmetic is only written for these).
    assert!(
        has_block_panel::<B>(),
        "block_panel: {} is not handled",
        B::INFO.name
    );
    let nb = k.div_ceil(B::VALUES);
    assert!(
        nb * B::GROUPS * 64 <= so && so + nb * scale_bytes::<B>() <= panel.len() && rows_of(out, k),
        "block_panel: length mismatch"
    );
    // SAFETY: the token proves the features; the lengths are checked above.
    unsafe { blocks::<B>(panel, so, k, out) };
    k / B::VALUES * B::VALUES
}

/// [`block_panel`]: one 16-column half of a 32-value (sub-)block at a
/// time, each column's codes for the 16 rows (one row per 32-bit lane of
/// the chunks), its values by the format's arithmetic, then the transpose.
#[target_feature(enable = "avx512f,avx2,f16c")]
unsafe fn blocks<B: PackedBlock>(panel: &[u8], so: usize, k: usize, out: &mut [f32]) {
    let subs = B::VALUES / 32;
    // Lane groups per 32 values: Q8_0 8, Q4_K 4, Q5_K 5 (5-bit codes),
    // Q6_K 6 (two chunks of bits 4-5).
    let g = B::GROUPS / subs;
    let (q8, with_min) = (B::FORMAT == WeightFormat::Q8_0, B::SCALES == 2);
    let rows = out.len() / k;
    let p = panel.as_ptr();
    for b in 0..k / B::VALUES {
        let scales = so + b * scale_bytes::<B>();
        let small = scales + B::SCALES * NR * 2;
        // SAFETY (every load below): the checks of `block_panel` put block
        // b's codes (`B::GROUPS` chunks of 64 bytes from `b * B::GROUPS *
        // 64`) and scales (`scale_bytes` from `scales`) inside `panel`; the
        // loads take any alignment.
        let ld16 = |o: usize| unsafe { _mm_loadu_si128(p.add(o).cast()) };
        let d = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(p.add(scales).cast()) });
        let m = if with_min {
            _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(p.add(scales + 32).cast()) })
        } else {
            _mm512_setzero_ps()
        };
        for s in 0..subs {
            let mut chunk = [_mm512_setzero_si512(); 8];
            for (c, v) in chunk.iter_mut().enumerate().take(g) {
                // SAFETY: as above.
                *v = unsafe { _mm512_loadu_si512(p.add(((b * subs + s) * g + c) * 64).cast()) };
            }
            // Each half's scale, and the minimum to subtract (Q4_K, Q5_K).
            let (ds, ms) = match B::FORMAT {
                WeightFormat::Q6_K => {
                    let sc =
                        |u: usize| _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(ld16(small + 16 * u)));
                    let ds = [_mm512_mul_ps(d, sc(2 * s)), _mm512_mul_ps(d, sc(2 * s + 1))];
                    (ds, m)
                }
                WeightFormat::Q4_K | WeightFormat::Q5_K => {
                    let sc =
                        |u: usize| _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(ld16(small + 16 * u)));
                    let ds = _mm512_mul_ps(d, sc(s));
                    ([ds, ds], _mm512_mul_ps(m, sc(8 + s)))
                }
                _ => ([d, d], m),
            };
            for half in 0..2 {
                let mut col = [_mm512_setzero_ps(); NR];
                for (e16, col) in col.iter_mut().enumerate() {
                    let e = 16 * half + e16;
                    let splat = |v: usize| _mm512_set1_epi32(v as i32);
                    let q = if q8 {
                        // Byte e % 4 of chunk e / 4, stored as q + 128.
                        let v = _mm512_srlv_epi32(chunk[e / 4], splat(8 * (e % 4)));
                        _mm512_sub_epi32(_mm512_and_si512(v, splat(0xFF)), splat(128))
                    } else {
                        let (c, i) = (e16 / 4, e16 % 4);
                        if g == 5 {
                            // Whole 5-bit codes (`formats::q5_packed_group`):
                            // bits 0..5 of byte i of chunk c, or its bits
                            // 5..8 over bits 2c..2c + 2 of byte i of chunk 4.
                            let v = _mm512_srlv_epi32(chunk[c], splat(8 * i + 5 * half));
                            if half == 0 {
                                _mm512_and_si512(v, splat(0x1F))
                            } else {
                                let l = _mm512_srlv_epi32(chunk[4], splat(8 * i + 2 * c));
                                let t = _mm512_slli_epi32::<2>(_mm512_and_si512(v, splat(7)));
                                _mm512_or_si512(t, _mm512_and_si512(l, splat(3)))
                            }
                        } else {
                            let v = _mm512_srlv_epi32(chunk[c], splat(8 * i + 4 * half));
                            let mut q = _mm512_and_si512(v, splat(0xF));
                            if g == 6 {
                                // Bits 4-5: bits 2c..2c + 2 of byte i of the half's
                                // chunk; the codes are stored as q + 32.
                                let h = _mm512_srlv_epi32(chunk[4 + half], splat(8 * i + 2 * c));
                                let h = _mm512_and_si512(h, splat(3));
                                q = _mm512_or_si512(q, _mm512_slli_epi32::<4>(h));
                                q = _mm512_sub_epi32(q, splat(32));
                            }
                            q
                        }
                    };
                    let y = _mm512_mul_ps(ds[half], _mm512_cvtepi32_ps(q));
                    *col = if with_min { _mm512_sub_ps(y, ms) } else { y };
                }
                let at = b * B::VALUES + 32 * s + 16 * half;
                for (l, row) in transpose(col).into_iter().take(rows).enumerate() {
                    // SAFETY: row `l` < rows, columns `at..at + 16` <= k:
                    // inside `out` (`rows * k` values).
                    unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(l * k + at), row) };
                }
            }
        }
    }
}

/// Whole tiles of a panel from its rows: `S`-byte values (2: F16 / BF16
/// bits; 4: f32 bits, or a block format's 4-byte lane groups), little-endian,
/// any alignment. `rows` holds the panel's [`NR`] rows of `k` values, `out`
/// (`k * NR` values) receives k-step `kk`'s values at `kk * NR..`. A tile is
/// 64 bytes of each row (`64 / S` k-steps); writes the whole tiles' k-steps
/// and returns their count, and whether any value written has all the bits
/// of `exp` set (its exponent, for a non-finite check while the values pass
/// through registers; `exp = 0` checks nothing); the caller packs the rest.
/// Panics unless `S` is 2 or 4 and both hold `k * NR` values.
pub(crate) fn pack_panel<const S: usize>(
    _: Avx512,
    rows: &[[u8; S]],
    k: usize,
    out: &mut [[u8; S]],
    exp: u32,
) -> (usize, bool) {
    assert!(
        (S == 2 || S == 4) && rows.len() == k * NR && out.len() == k * NR,
        "pack_panel: value size or length mismatch"
    );
    // SAFETY: the token proves the features; the sizes are checked above.
    let flagged = unsafe { pack_tiles(rows, k, out, exp) };
    let steps = 64 / S;
    (k / steps * steps, flagged)
}

#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_tiles<const S: usize>(
    rows: &[[u8; S]],
    k: usize,
    out: &mut [[u8; S]],
    exp: u32,
) -> bool {
    let steps = 64 / S;
    let mask = match S {
        2 => _mm512_set1_epi16(exp as i16),
        _ => _mm512_set1_epi32(exp as i32),
    };
    let mut flagged = 0u64;
    // 16-bit values: after the transpose, dword `l` of result `p` is row
    // `l`'s values of k-steps `2p` and `2p + 1`; this index puts the 16
    // rows' first values, then their second ones, in order (k-steps `2p`,
    // `2p + 1` of the panel).
    let idx: [u16; 32] = core::array::from_fn(|i| (2 * (i % 16) + i / 16) as u16);
    // SAFETY: 64 bytes read from a local array (any alignment).
    let idx = unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) };
    for t in 0..k / steps {
        let mut r = [_mm512_setzero_ps(); NR];
        for (l, r) in r.iter_mut().enumerate() {
            // SAFETY: row `l` < NR, k-steps `steps * t..steps * (t + 1)` <=
            // k: inside `rows` (`NR * k` values); `loadu` takes any
            // alignment.
            *r = unsafe { _mm512_loadu_ps(rows.as_ptr().add(l * k + steps * t).cast()) };
            if exp != 0 {
                let e = _mm512_and_si512(_mm512_castps_si512(*r), mask);
                flagged |= match S {
                    2 => _mm512_cmpeq_epi16_mask(e, mask) as u64,
                    _ => _mm512_cmpeq_epi32_mask(e, mask) as u64,
                };
            }
        }
        for (p, v) in transpose(r).into_iter().enumerate() {
            let v = match S {
                2 => _mm512_permutexvar_epi16(idx, _mm512_castps_si512(v)),
                _ => _mm512_castps_si512(v),
            };
            // SAFETY: result `p` holds k-steps `steps * t + p * steps / 16`
            // onwards (`steps / 16` of them, all < k), which fill
            // `out[(steps * t + p * steps / 16) * NR..][..64 / S]`, inside
            // `out` (`k * NR` values). (Plain stores: non-temporal ones
            // measured 5-10% slower, the buffer's lines having just been
            // zeroed.)
            unsafe {
                let at = out.as_mut_ptr().add((steps * t + p * steps / 16) * NR);
                _mm512_storeu_si512(at.cast(), v)
            };
        }
    }
    flagged != 0
}

/// The 16 x 16 transpose: lane `l` of result `s` is lane `s` of input `l`.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn transpose(r: [__m512; NR]) -> [__m512; NR] {
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

    /// Panels of random bytes (any codes, scales and f16 `d`, `m` /
    /// `dmin`, NaN and infinities included), whole and with fewer rows, and
    /// a last partial block: each whole block's values equal the scalar
    /// dequantization of the panel (`dequantize_panel_block`).
    #[test]
    fn block_panels_dequantize_as_the_scalar_code() {
        use crate::formats::*;
        use crate::pack::dequantize_panel_block;
        let Some(t) = Avx512::detect() else {
            println!("block_panel: SKIPPED (this CPU lacks AVX-512F/BW, AVX2 or F16C)");
            return;
        };
        fn check<B: PackedBlock>(t: Avx512) {
            let v = B::VALUES;
            let k: usize = 3 * v + v / 2 - 4;
            let nb = k.div_ceil(v);
            let so = nb * B::GROUPS * 64;
            let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ B::GROUPS as u64;
            let panel: Vec<u8> = (0..so + nb * scale_bytes::<B>())
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            for rows in [NR, 3] {
                let mut out = vec![f32::from_bits(0x7FC0_4321); rows * k];
                assert_eq!(block_panel::<B>(t, &panel, so, k, &mut out), 3 * v);
                let mut want = [0.0f32; 256];
                let want = &mut want[..v];
                for r in 0..rows {
                    for b in 0..nb {
                        let got = &out[r * k + b * v..][..v.min(k - b * v)];
                        if b < 3 {
                            dequantize_panel_block::<B>(&panel, so, b, r, want);
                            let same = |(g, w): (&f32, &f32)| {
                                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan())
                            };
                            let bad = got.iter().zip(want.iter()).position(|p| !same(p));
                            assert_eq!(bad, None, "{} rows {rows} row {r} block {b}", B::INFO.name);
                        } else {
                            assert!(
                                got.iter().all(|v| v.to_bits() == 0x7FC0_4321),
                                "past the whole blocks"
                            );
                        }
                    }
                }
            }
        }
        check::<BlockQ8_0>(t);
        check::<BlockQ4_K>(t);
        check::<BlockQ5_K>(t);
        check::<BlockQ6_K>(t);
    }

    /// Rows of 16- and 32-bit values (every 16-bit pattern), with k leaving
    /// a partial tile: each whole tile's value lands at its k-step and
    /// lane, the rest of `out` is left as it was.
    #[test]
    fn packs_rows_into_panel_order() {
        let Some(t) = Avx512::detect() else {
            println!("pack_panel: SKIPPED (this CPU lacks AVX-512F/BW, AVX2 or F16C)");
            return;
        };
        fn case<const S: usize>(t: Avx512, k: usize) {
            let rows: Vec<[u8; S]> = (0..k * NR)
                .map(|i| core::array::from_fn(|b| ((i * 40503 + b * 7919) % 251) as u8))
                .collect();
            let mut out = vec![[0xCD; S]; k * NR];
            let (done, _) = pack_panel(t, &rows, k, &mut out, 0);
            assert_eq!(done, k / (64 / S) * (64 / S));
            for kk in 0..k {
                for l in 0..NR {
                    let want = if kk < done {
                        rows[l * k + kk]
                    } else {
                        [0xCD; S]
                    };
                    assert_eq!(
                        out[kk * NR + l],
                        want,
                        "{S} bytes, k {k} k-step {kk} row {l}"
                    );
                }
            }
        }
        for k in [32, 64 * 70 + 17, 31, 15] {
            case::<2>(t, k);
            case::<4>(t, k);
        }
        // Every 16-bit pattern once.
        let rows: Vec<[u8; 2]> = (0..65536u32).map(|v| (v as u16).to_le_bytes()).collect();
        let k = 65536 / NR;
        let mut out = vec![[0, 0]; k * NR];
        assert_eq!(pack_panel(t, &rows, k, &mut out, 0).0, k);
        for kk in 0..k {
            for l in 0..NR {
                assert_eq!(out[kk * NR + l], rows[l * k + kk]);
            }
        }
    }

    /// The exponent check flags a tile holding one value with every bit of
    /// the mask set, wherever it is, and no tile without one (F16, BF16,
    /// F32 exponents).
    #[test]
    fn flags_values_with_all_exponent_bits() {
        let Some(t) = Avx512::detect() else {
            println!("pack_panel: SKIPPED (this CPU lacks AVX-512F/BW, AVX2 or F16C)");
            return;
        };
        fn case<const S: usize>(t: Avx512, exp: u32) {
            let tile = 64 / S;
            let k = 6 * tile + 7;
            let whole = 6 * tile;
            let bytes = |v: u32| -> [u8; S] { core::array::from_fn(|b| (v >> (8 * b)) as u8) };
            let finite = bytes(exp - 1);
            let mut rows = vec![finite; k * NR];
            let mut out = vec![[0; S]; k * NR];
            assert_eq!(pack_panel(t, &rows, k, &mut out, exp), (whole, false));
            assert_eq!(pack_panel(t, &rows, k, &mut out, 0), (whole, false));
            for at in [0, 5 * k + tile - 1, 15 * k + whole - 1, 15 * k + whole] {
                rows[at] = bytes(exp | 1 << (8 * S - 1) | 1);
                // Past the whole tiles is the caller's to check.
                let want = at % k < whole;
                assert_eq!(
                    pack_panel(t, &rows, k, &mut out, exp),
                    (whole, want),
                    "{exp:#x} at {at}"
                );
                rows[at] = finite;
            }
        }
        case::<2>(t, 0x7C00);
        case::<2>(t, 0x7F80);
        case::<4>(t, 0x7F80_0000);
    }

    /// Every 16-bit pattern (NaN payloads, subnormals, both zeros) as F16
    /// and as BF16, in a panel of 4096 k-steps plus a partial tile, whole
    /// and with fewer rows: each output is its value widened exactly (F16C's
    /// bits, the same as `f16::to_f32`), at its row and column.
    #[test]
    fn widens_and_transposes_every_value() {
        let Some(t) = Avx512::detect() else {
            println!("widen_panel: SKIPPED (this CPU lacks AVX-512F/BW, AVX2 or F16C)");
            return;
        };
        let k = 65536 / NR + 5;
        let panel: Vec<u16> = (0..k * NR)
            .map(|i| (i as u32 * 40503 % 65536) as u16)
            .collect();
        for bf16 in [false, true] {
            for rows in [NR, 5] {
                let mut out = vec![f32::from_bits(0x7FC0_1234); rows * k];
                let widened = if bf16 {
                    widen_panel(
                        t,
                        bytemuck::cast_slice::<u16, half::bf16>(&panel),
                        k,
                        &mut out,
                    )
                } else {
                    widen_panel(
                        t,
                        bytemuck::cast_slice::<u16, half::f16>(&panel),
                        k,
                        &mut out,
                    )
                };
                assert_eq!(widened, k / NR * NR);
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

    /// An F32 panel of any bit patterns (NaN payloads, subnormals, both
    /// zeros), whole and with fewer rows, with a partial tile: each whole
    /// tile's value lands at its row and column with its bits.
    #[test]
    fn transposes_f32_panels_bit_for_bit() {
        let Some(t) = Avx512::detect() else {
            println!("widen_panel: SKIPPED (this CPU lacks AVX-512F/BW, AVX2 or F16C)");
            return;
        };
        let k = 16 * 9 + 7;
        let panel: Vec<f32> = (0..k * NR)
            .map(|i| f32::from_bits((i as u32).wrapping_mul(2654435761)))
            .collect();
        for rows in [NR, 5] {
            let mut out = vec![f32::from_bits(0x7FC0_1234); rows * k];
            assert_eq!(widen_panel(t, &panel, k, &mut out), k / NR * NR);
            for l in 0..rows {
                for kk in 0..k {
                    let want = if kk < k / NR * NR {
                        panel[kk * NR + l].to_bits()
                    } else {
                        0x7FC0_1234
                    };
                    assert_eq!(
                        out[l * k + kk].to_bits(),
                        want,
                        "rows {rows} row {l} k-step {kk}"
                    );
                }
            }
        }
    }
}
