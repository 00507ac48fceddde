//! GGUF Q4_K: super-blocks of 256 4-bit codes in 8 sub-blocks of 32, each
//! with a 6-bit scale `sc` and minimum `mn`, and f16 `d` and `dmin` (144
//! bytes); value `d * sc * q - dmin * mn`.
//!
//! Packed (see [`super::kquant`]): each 32-value sub-block's codes as a
//! Q4_1 block's (4 nibble groups); scales `d`, `dmin` and 4 groups of
//! sub-block scales and minimums (one byte each). 148 bytes per super-block
//! and row.

use super::kquant::{
    dequantize_packed_with_min, dequantize_with_min, min_scale_group, min_scales_of, min_sub_scale,
    nibble_group, nibble_groups_of, nibbles_of, pack_scales, quantize_with_min,
    quantize_with_min_from, quantize_with_min_vectorized, MinSearch, WithMin, SCALE_GROUPS,
};
use super::{bytewise_eq, FormatInfo, PackedBlock, SubScale, WeightFormat, QK, QK_K};
use bytemuck::{Pod, Zeroable};
use half::f16;

/// GGUF `block_q4_K`.
///
/// Element `64 g + e` (`e < 32`) is the low nibble of `qs[32 g + e]`,
/// element `64 g + 32 + e` its high nibble; sub-block `j` (elements `32 j..`)
/// has scale and minimum `get_scale_min_k4(j, scales)`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_K {
    /// Super-block scale of the sub-block scales.
    pub d: f16,
    /// Super-block scale of the sub-block minimums.
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit minimums, packed.
    pub scales: [u8; 12],
    /// 4-bit codes.
    pub qs: [u8; QK_K / 2],
}

bytewise_eq!(BlockQ4_K);
const _: () = assert!(core::mem::size_of::<BlockQ4_K>() == 144);

impl BlockQ4_K {
    /// The block of 256 codes in 0..16 and its scales, with `qs` as
    /// `quantize_row_q4_K_ref` writes it.
    fn from_codes(l: &[u8; QK_K], d: f16, dmin: f16, sc: &[u8; 8], mn: &[u8; 8]) -> Self {
        BlockQ4_K {
            d,
            dmin,
            scales: pack_scales(sc, mn),
            qs: core::array::from_fn(|i| {
                let (g, e) = (i / 32, i % 32);
                l[64 * g + e] | (l[64 * g + 32 + e] << 4)
            }),
        }
    }
}

impl WithMin for BlockQ4_K {
    const SEARCH: (i32, f32, i32) = (15, -1.0, 20);
    #[inline(always)]
    fn from_search(x: &[f32; QK_K], search: &MinSearch) -> Self {
        let (l, d, dmin, sc, mn) = quantize_with_min_from(x, Self::SEARCH.0, search);
        Self::from_codes(&l, d, dmin, &sc, &mn)
    }
}

impl PackedBlock for BlockQ4_K {
    const FORMAT: WeightFormat = WeightFormat::Q4_K;
    const INFO: FormatInfo = FormatInfo {
        name: "Q4_K",
        aliases: &[],
        ggml_type: 12,
        block_size: QK_K,
        block_bytes: 144,
        bits_per_value: 4,
        act_offset: Some(-1),
    };
    const GROUPS: usize = 8 * 4;
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
            let (s, c) = (c / 4, c % 4);
            nibble_group(|j| self.ucode(j), s, c)
        }
    }
    /// Sub-block `s`'s codes are one nibble of each of 32 `qs` bytes: its
    /// groups are word operations on them.
    #[inline(always)]
    fn packed_groups(&self, mut put: impl FnMut(usize, [u8; 4])) {
        for s in 0..QK_K / QK {
            let run = &self.qs[32 * (s / 2)..];
            for (c, g) in nibble_groups_of(run, 4 * (s % 2) as u32)
                .into_iter()
                .enumerate()
            {
                put(4 * s + c, g);
            }
        }
    }
    #[inline(always)]
    fn from_packed([d, dmin]: [f16; 2], group: impl Fn(usize) -> [u8; 4]) -> Self {
        let (sc, mn) = min_scales_of(&group, Self::GROUPS);
        let mut l = [0u8; QK_K];
        for (s, sub) in l.chunks_exact_mut(QK).enumerate() {
            sub.copy_from_slice(&nibbles_of(&group, 4 * s));
        }
        Self::from_codes(&l, d, dmin, &sc, &mn)
    }
    #[inline(always)]
    fn dequantize_packed(scales: [f16; 2], group: impl Fn(usize) -> [u8; 4], out: &mut [f32]) {
        dequantize_packed_with_min::<4>(scales, &group, out)
    }
    #[inline(always)]
    fn ucode(&self, j: usize) -> u8 {
        let (g, h, e) = (j / 64, (j / 32) % 2, j % 32);
        (self.qs[32 * g + e] >> (4 * h)) & 0xF
    }
    #[inline]
    fn sub_scale(&self, s: usize) -> SubScale {
        min_sub_scale(self.d, self.dmin, &self.scales, s)
    }
    fn padding() -> Self {
        Self::zeroed()
    }
    /// `quantize_row_q4_K_ref` for one super-block.
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
    /// `dequantize_row_q4_K` for one super-block.
    #[inline(always)]
    fn dequantize(&self, out: &mut [f32]) {
        dequantize_with_min(self.d, self.dmin, &self.scales, |j| self.ucode(j), out)
    }
}

super::row_functions!(
    BlockQ4_K,
    "q4_k",
    256,
    quantize_row_q4_k,
    quantize_block_q4_k,
    dequantize_row_q4_k
);

#[cfg(test)]
mod tests {
    use super::super::kquant::tests::{check_format, wave};
    use super::*;

    #[test]
    fn packing_and_dequantization_follow_the_block() {
        check_format::<BlockQ4_K>(0.2);
    }

    #[test]
    fn zero_block_is_zero() {
        let b = quantize_block_q4_k(&[0.0; QK_K]);
        assert_eq!(bytemuck::bytes_of(&b), &[0u8; 144][..]);
        let b = quantize_block_q4_k(&wave(1));
        assert_ne!(bytemuck::bytes_of(&b), &[0u8; 144][..]);
    }
}
