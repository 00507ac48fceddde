//! GGUF Q6_K: super-blocks of 256 6-bit codes in 16 groups of 16, each with
//! an int8 scale, and an f16 `d` (210 bytes); value `d * sc * (q - 32)`.
//!
//! Packed (see [`super::kquant`]): per 32-value sub-block 4 nibble groups
//! (low 4 bits, as Q4_0) and 2 groups of 2-bit high parts; scale `d` and 4
//! groups of the 16 int8 scales. 210 bytes per super-block and row, as in
//! GGUF.

use super::kquant::{
    make_qx_quants_q6, nearest_int, nibble_group, nibble_groups_of, nibbles_of, small_scales,
    GROUP_MAX_EPS, SCALE_GROUPS,
};
use super::{
    bytewise_eq, f16_to_f32, word, FormatInfo, PackedBlock, SubScale, WeightFormat, QK, QK_K,
};
use bytemuck::{Pod, Zeroable};
use half::f16;

/// GGUF `block_q6_K`.
///
/// In half `n` (elements `128 n..`), element `128 n + 32 t + l` (`t < 4`,
/// `l < 32`) has low 4 bits from `ql[64 n + l + 32 (t % 2)]` (low nibble for
/// `t < 2`, high nibble after) and high 2 bits `(qh[32 n + l] >> 2 t) & 3`;
/// element `e` has scale `scales[e / 16]`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6_K {
    /// Low 4 bits of the codes.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of the codes.
    pub qh: [u8; QK_K / 4],
    /// Scales of the 16-value groups.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}

bytewise_eq!(BlockQ6_K);
const _: () = assert!(core::mem::size_of::<BlockQ6_K>() == 210);

impl BlockQ6_K {
    /// The block of `x` from its groups' search results (as
    /// `quantize_row_q6_K_ref` goes on after the searches): the scales to
    /// int8 against the f16 `d`, then the final codes; `search_code(i)`
    /// gives element `i`'s code from the search, which the C keeps for
    /// groups whose scale is 0.
    #[inline(always)]
    fn finish(x: &[f32; QK_K], scales: &[f32; 16], search_code: impl Fn(usize) -> u8) -> Self {
        Self::finish_with(scales, |sc, d| {
            let mut l = [0u8; QK_K];
            for (j, &s) in sc.iter().enumerate() {
                let dj = d.to_f32() * s as f32;
                for i in 16 * j..16 * (j + 1) {
                    // `if (!d) continue;`: the search's codes stay.
                    l[i] = if dj == 0.0 {
                        search_code(i)
                    } else {
                        (nearest_int(x[i] / dj).clamp(-32, 31) + 32) as u8
                    };
                }
            }
            l
        })
    }

    /// [`BlockQ6_K::finish`] with the final codes from `codes(sc, d)`: the
    /// codes (`l + 32`) of group `j` are `nearest_int(x / (d * sc[j]))`
    /// clamped to `-32..=31`, or the search's where `d * sc[j]` is 0.
    #[inline(always)]
    pub(crate) fn finish_with(
        scales: &[f32; 16],
        codes: impl FnOnce(&[i8; 16], f16) -> [u8; QK_K],
    ) -> Self {
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for &scale in scales {
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            return Self::zeroed();
        }
        let iscale = -128.0 / max_scale;
        let d = f16::from_f32(1.0 / iscale);
        // MIN(127, nearest_int(...)) stored as int8_t.
        let sc: [i8; 16] =
            core::array::from_fn(|ib| nearest_int(iscale * scales[ib]).min(127) as i8);
        let (ql, qh) = Self::codes(&codes(&sc, d));
        BlockQ6_K {
            ql,
            qh,
            scales: sc,
            d,
        }
    }

    /// `ql` and `qh` of 256 codes in 0..64, as `quantize_row_q6_K_ref`
    /// writes them.
    fn codes(l: &[u8; QK_K]) -> ([u8; QK_K / 2], [u8; QK_K / 4]) {
        let mut ql = [0u8; QK_K / 2];
        let mut qh = [0u8; QK_K / 4];
        for n in 0..2 {
            let (j, ql, qh) = (128 * n, &mut ql[64 * n..], &mut qh[32 * n..]);
            for i in 0..32 {
                let q = [l[j + i], l[j + i + 32], l[j + i + 64], l[j + i + 96]];
                ql[i] = (q[0] & 0xF) | ((q[2] & 0xF) << 4);
                ql[i + 32] = (q[1] & 0xF) | ((q[3] & 0xF) << 4);
                qh[i] = (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
            }
        }
        (ql, qh)
    }
}

impl PackedBlock for BlockQ6_K {
    const FORMAT: WeightFormat = WeightFormat::Q6_K;
    const INFO: FormatInfo = FormatInfo {
        name: "Q6_K",
        aliases: &[],
        ggml_type: 14,
        block_size: QK_K,
        block_bytes: 210,
        bits_per_value: 6,
        act_offset: Some(-1),
    };
    const GROUPS: usize = 8 * 6;
    const SCALE_GROUPS: usize = SCALE_GROUPS;
    const SCALES: usize = 1;
    const OFFSET: i32 = 32;

    #[inline(always)]
    fn scales(&self) -> [f16; 2] {
        [self.d, f16::ZERO]
    }
    #[inline(always)]
    fn packed_group(&self, c: usize) -> [u8; 4] {
        if c >= Self::GROUPS {
            let c = c - Self::GROUPS;
            core::array::from_fn(|i| self.scales[4 * c + i] as u8)
        } else {
            let (s, c) = (c / 6, c % 6);
            if c < 4 {
                nibble_group(|j| self.ucode(j), s, c)
            } else {
                // Byte i, bits 2j..2j+2: element 4j + i of the half.
                let first = QK * s + 16 * (c - 4);
                core::array::from_fn(|i| {
                    (0..4).fold(0u8, |h, j| {
                        h | ((self.ucode(first + 4 * j + i) >> 4) << (2 * j))
                    })
                })
            }
        }
    }
    /// Sub-block `s` is a run of 32 `ql` bytes (one nibble of each) and
    /// of 32 `qh` bytes (two bits of each): its groups are word operations
    /// on those runs.
    #[inline(always)]
    fn packed_groups(&self, mut put: impl FnMut(usize, [u8; 4])) {
        for s in 0..QK_K / QK {
            let (n, t) = (s / 4, s % 4);
            let (ql, qh) = (&self.ql[64 * n + 32 * (t % 2)..], &self.qh[32 * n..]);
            for (c, g) in nibble_groups_of(ql, 4 * (t / 2) as u32)
                .into_iter()
                .enumerate()
            {
                put(6 * s + c, g);
            }
            for h in 0..2 {
                let g = (0..4).fold(0u32, |g, j| {
                    g | (((word(qh, 4 * h + j) >> (2 * t)) & 0x0303_0303) << (2 * j))
                });
                put(6 * s + 4 + h, g.to_le_bytes());
            }
        }
    }
    #[inline(always)]
    fn from_packed([d, _]: [f16; 2], group: impl Fn(usize) -> [u8; 4]) -> Self {
        let scales = small_scales(&group, Self::GROUPS).map(|b| b as i8);
        let mut l = [0u8; QK_K];
        for (s, sub) in l.chunks_exact_mut(QK).enumerate() {
            let first = 6 * s;
            let high = [group(first + 4), group(first + 5)];
            for (e, (c, low)) in sub.iter_mut().zip(nibbles_of(&group, first)).enumerate() {
                let (h, j, i) = (e / 16, (e % 16) / 4, e % 4);
                *c = low | (((high[h][i] >> (2 * j)) & 3) << 4);
            }
        }
        let (ql, qh) = Self::codes(&l);
        BlockQ6_K { ql, qh, scales, d }
    }
    /// `dequantize_row_q6_K` of the packed form: `(d * sc) * (q - 32)`
    /// with the codes read from the groups (as [`Self::dequantize`]).
    #[inline(always)]
    fn dequantize_packed([d, _]: [f16; 2], group: impl Fn(usize) -> [u8; 4], out: &mut [f32]) {
        let out: &mut [f32; QK_K] = out.try_into().expect("a super-block of 256 values");
        let d = f16_to_f32(d);
        let scales = small_scales(&group, Self::GROUPS).map(|b| b as i8);
        for (s, y) in out.chunks_exact_mut(QK).enumerate() {
            let first = 6 * s;
            let high = [group(first + 4), group(first + 5)];
            let (ds0, ds1) = (d * scales[2 * s] as f32, d * scales[2 * s + 1] as f32);
            for (e, (y, low)) in y.iter_mut().zip(nibbles_of(&group, first)).enumerate() {
                let (h, j, i) = (e / 16, (e % 16) / 4, e % 4);
                let q = (low | (((high[h][i] >> (2 * j)) & 3) << 4)) as i32 - 32;
                *y = if e < 16 { ds0 } else { ds1 } * q as f32;
            }
        }
    }
    #[inline(always)]
    fn ucode(&self, j: usize) -> u8 {
        let (n, t, l) = (j / 128, (j / 32) % 4, j % 32);
        let low = (self.ql[64 * n + l + 32 * (t % 2)] >> (4 * (t / 2))) & 0xF;
        let high = (self.qh[32 * n + l] >> (2 * t)) & 3;
        low | (high << 4)
    }
    #[inline]
    fn sub_scale(&self, s: usize) -> SubScale {
        SubScale::Halves {
            d: self.d.to_f32(),
            s: [self.scales[2 * s] as i32, self.scales[2 * s + 1] as i32],
        }
    }
    fn padding() -> Self {
        // Scale 0 and code 32 (value 0) everywhere.
        let (ql, qh) = Self::codes(&[32; QK_K]);
        BlockQ6_K {
            ql,
            qh,
            scales: [0; 16],
            d: f16::ZERO,
        }
    }
    /// `quantize_row_q6_K_ref` for one super-block.
    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK_K] = x.try_into().expect("a super-block of 256 values");
        let mut l = [0u8; QK_K];
        let mut scales = [0.0f32; 16];
        for ib in 0..16 {
            let xs: &[f32; 16] = x[16 * ib..16 * (ib + 1)].try_into().unwrap();
            let ls: &mut [u8; 16] = (&mut l[16 * ib..16 * (ib + 1)]).try_into().unwrap();
            scales[ib] = make_qx_quants_q6(xs, ls);
        }
        Self::finish(x, &scales, |i| l[i])
    }
    /// `dequantize_row_q6_K` for one super-block.
    #[inline(always)]
    fn dequantize(&self, out: &mut [f32]) {
        let out: &mut [f32; QK_K] = out.try_into().expect("a super-block of 256 values");
        let d = f16_to_f32(self.d);
        // 32 values at a time: the sub-block's codes come from contiguous
        // bytes, so that the loop vectorizes.
        for (s, y) in out.chunks_exact_mut(32).enumerate() {
            let (ds0, ds1) = (
                d * self.scales[2 * s] as f32,
                d * self.scales[2 * s + 1] as f32,
            );
            for (e, y) in y.iter_mut().enumerate() {
                let q = self.ucode(32 * s + e) as i32 - 32;
                *y = if e < 16 { ds0 } else { ds1 } * q as f32;
            }
        }
    }
}

super::row_functions!(
    BlockQ6_K,
    "q6_k",
    256,
    quantize_row_q6_k,
    quantize_block_q6_k,
    dequantize_row_q6_k
);

#[cfg(test)]
mod tests {
    use super::super::kquant::tests::{check_format, wave};
    use super::*;

    #[test]
    fn packing_and_dequantization_follow_the_block() {
        check_format::<BlockQ6_K>(0.05);
    }

    #[test]
    fn zero_block_is_zero() {
        let b = quantize_block_q6_k(&[0.0; QK_K]);
        assert_eq!(bytemuck::bytes_of(&b), &[0u8; 210][..]);
        let b = quantize_block_q6_k(&wave(1));
        assert_ne!(bytemuck::bytes_of(&b), &[0u8; 210][..]);
    }
}
