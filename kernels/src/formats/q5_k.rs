//! GGUF Q5_K: super-blocks of 256 5-bit codes in 8 sub-blocks of 32, each
//! with a 6-bit scale `sc` and minimum `mn`, and f16 `d` and `dmin` (176
//! bytes); value `d * sc * q - dmin * mn`.
//!
//! Packed (see [`super::kquant`]): each 32-value sub-block's codes as a
//! Q5_1 block's (five groups of 5-bit codes); scales `d`, `dmin` and
//! 4 groups of sub-block scales and minimums (one byte each). 180 bytes per
//! super-block and row.

use super::kquant::{
    dequantize_packed_with_min, dequantize_with_min, min_scale_group, min_scales_of, min_sub_scale,
    nibble_groups_of, pack_scales, quantize_with_min, quantize_with_min_from,
    quantize_with_min_vectorized, MinSearch, WithMin, SCALE_GROUPS,
};
use super::{
    bytewise_eq, gather4, q5_codes, q5_packed_groups, word, FormatInfo, PackedBlock, SubScale,
    WeightFormat, QK, QK_K,
};
use bytemuck::{Pod, Zeroable};
use half::f16;

/// GGUF `block_q5_K`.
///
/// Element `64 g + e` (`e < 32`) has the low nibble of `qs[32 g + e]` and
/// bit `2 g` of `qh[e]` as its fifth bit, element `64 g + 32 + e` the high
/// nibble and bit `2 g + 1`; sub-block `j` (elements `32 j..`) has scale and
/// minimum `get_scale_min_k4(j, scales)`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_K {
    /// Super-block scale of the sub-block scales.
    pub d: f16,
    /// Super-block scale of the sub-block minimums.
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit minimums, packed.
    pub scales: [u8; 12],
    /// Fifth bits.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits of the codes.
    pub qs: [u8; QK_K / 2],
}

bytewise_eq!(BlockQ5_K);
const _: () = assert!(core::mem::size_of::<BlockQ5_K>() == 176);

impl BlockQ5_K {
    /// The block of 256 codes in 0..32 and its scales, with `qs` and `qh`
    /// as `quantize_row_q5_K_ref` writes them.
    fn from_codes(l: &[u8; QK_K], d: f16, dmin: f16, sc: &[u8; 8], mn: &[u8; 8]) -> Self {
        let mut qs = [0u8; QK_K / 2];
        let mut qh = [0u8; QK_K / 8];
        for g in 0..4 {
            for e in 0..32 {
                let (l1, l2) = (l[64 * g + e], l[64 * g + 32 + e]);
                qh[e] |= ((l1 >> 4) << (2 * g)) | ((l2 >> 4) << (2 * g + 1));
                qs[32 * g + e] = (l1 & 0xF) | ((l2 & 0xF) << 4);
            }
        }
        BlockQ5_K {
            d,
            dmin,
            scales: pack_scales(sc, mn),
            qh,
            qs,
        }
    }
}

impl WithMin for BlockQ5_K {
    const SEARCH: (i32, f32, i32) = (31, -0.5, 15);
    #[inline(always)]
    fn from_search(x: &[f32; QK_K], search: &MinSearch) -> Self {
        let (l, d, dmin, sc, mn) = quantize_with_min_from(x, Self::SEARCH.0, search);
        Self::from_codes(&l, d, dmin, &sc, &mn)
    }
}

impl BlockQ5_K {
    /// Sub-block `s` (elements `32 s..32 s + 32`) as a Q5_0 / Q5_1 block's
    /// `qs` and `qh` (bit `e`: element `e`'s fifth bit), with word
    /// operations: the nibbles are the low (even `s`) or high (odd) halves
    /// of `qs[32 (s / 2)..]`, the fifth bits bit `s` of each `qh` byte.
    #[inline(always)]
    fn sub_block_q5(&self, s: usize) -> ([u8; 16], u32) {
        let qs: [u8; 16] = bytemuck::cast(nibble_groups_of(
            &self.qs[32 * (s / 2)..],
            4 * (s % 2) as u32,
        ));
        let qh = (0..8).fold(0u32, |h, k| {
            h | gather4((word(&self.qh, k) >> s) & 0x0101_0101) << (4 * k)
        });
        (qs, qh)
    }
}

impl PackedBlock for BlockQ5_K {
    const FORMAT: WeightFormat = WeightFormat::Q5_K;
    const INFO: FormatInfo = FormatInfo {
        name: "Q5_K",
        aliases: &[],
        ggml_type: 13,
        block_size: QK_K,
        block_bytes: 176,
        bits_per_value: 5,
        act_offset: Some(-1),
    };
    const GROUPS: usize = 8 * 5;
    const SCALE_GROUPS: usize = SCALE_GROUPS;
    const SCALES: usize = 2;
    const OFFSET: i32 = 0;

    #[inline(always)]
    fn scales(&self) -> [f16; 2] {
        [self.d, self.dmin]
    }
    #[inline(always)]
    fn packed_group(&self, c: usize) -> [u8; 4] {
        if c >= Self::GROUPS {
            min_scale_group(&self.scales, c - Self::GROUPS)
        } else {
            let (qs, qh) = self.sub_block_q5(c / 5);
            q5_packed_groups(&qs, qh)[c % 5]
        }
    }
    #[inline(always)]
    fn packed_groups(&self, mut put: impl FnMut(usize, [u8; 4])) {
        for s in 0..QK_K / QK {
            let (qs, qh) = self.sub_block_q5(s);
            for (c, g) in q5_packed_groups(&qs, qh).into_iter().enumerate() {
                put(5 * s + c, g);
            }
        }
    }
    #[inline(always)]
    fn from_packed([d, dmin]: [f16; 2], group: impl Fn(usize) -> [u8; 4]) -> Self {
        let (sc, mn) = min_scales_of(&group, Self::GROUPS);
        let mut l = [0u8; QK_K];
        for (s, sub) in l.chunks_exact_mut(QK).enumerate() {
            sub.copy_from_slice(&q5_codes(&group, 5 * s));
        }
        Self::from_codes(&l, d, dmin, &sc, &mn)
    }
    #[inline(always)]
    fn dequantize_packed(scales: [f16; 2], group: impl Fn(usize) -> [u8; 4], out: &mut [f32]) {
        dequantize_packed_with_min::<5>(scales, &group, out)
    }
    #[inline(always)]
    fn ucode(&self, j: usize) -> u8 {
        let (g, h, e) = (j / 64, (j / 32) % 2, j % 32);
        ((self.qs[32 * g + e] >> (4 * h)) & 0xF) | (((self.qh[e] >> (j / 32)) & 1) << 4)
    }
    #[inline]
    fn sub_scale(&self, s: usize) -> SubScale {
        min_sub_scale(self.d, self.dmin, &self.scales, s)
    }
    fn padding() -> Self {
        Self::zeroed()
    }
    /// `quantize_row_q5_K_ref` for one super-block.
    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK_K] = x.try_into().expect("a super-block of 256 values");
        let (l, d, dmin, sc, mn) =
            quantize_with_min(x, Self::SEARCH.0, Self::SEARCH.1, Self::SEARCH.2);
        Self::from_codes(&l, d, dmin, &sc, &mn)
    }
    /// The same bytes, the eight sub-block searches side by side.
    #[inline(always)]
    fn quantize_vectorized(x: &[f32]) -> Self {
        let x: &[f32; QK_K] = x.try_into().expect("a super-block of 256 values");
        let (l, d, dmin, sc, mn) =
            quantize_with_min_vectorized(x, Self::SEARCH.0, Self::SEARCH.1, Self::SEARCH.2);
        Self::from_codes(&l, d, dmin, &sc, &mn)
    }
    /// `dequantize_row_q5_K` for one super-block.
    #[inline(always)]
    fn dequantize(&self, out: &mut [f32]) {
        dequantize_with_min(self.d, self.dmin, &self.scales, |j| self.ucode(j), out)
    }
}

super::row_functions!(
    BlockQ5_K,
    "q5_k",
    256,
    quantize_row_q5_k,
    quantize_block_q5_k,
    dequantize_row_q5_k
);

#[cfg(test)]
mod tests {
    use super::super::kquant::tests::{check_format, wave};
    use super::*;

    #[test]
    fn sub_blocks_as_q5_blocks_hold_the_codes() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2000 {
            let b: BlockQ5_K = super::super::tests::random_block(&mut x);
            for s in 0..QK_K / QK {
                let (qs, qh) = b.sub_block_q5(s);
                for e in 0..QK {
                    let code =
                        super::super::nibble(&qs, e) | super::super::high_bit(&qh.to_le_bytes(), e);
                    assert_eq!(code, b.ucode(QK * s + e), "sub-block {s}, element {e}");
                }
            }
        }
    }

    #[test]
    fn packing_and_dequantization_follow_the_block() {
        check_format::<BlockQ5_K>(0.1);
    }

    #[test]
    fn zero_block_is_zero() {
        let b = quantize_block_q5_k(&[0.0; QK_K]);
        assert_eq!(bytemuck::bytes_of(&b), &[0u8; 176][..]);
        let b = quantize_block_q5_k(&wave(1));
        assert_ne!(bytemuck::bytes_of(&b), &[0u8; 176][..]);
    }
}
