//! F16 weights: IEEE half precision, widened exactly to f32 by the kernels.
//!
//! Packed: `k` x 16 f16 per panel (one k-step: the 16 rows' values).

use super::{FloatElem, FormatInfo, WeightFormat};
use half::f16;

impl FloatElem for f16 {
    const FORMAT: WeightFormat = WeightFormat::F16;
    const INFO: FormatInfo = FormatInfo {
        name: "F16",
        aliases: &["FLOAT16", "HALF", "FP16"],
        ggml_type: 1,
        block_size: 1,
        block_bytes: 2,
        bits_per_value: 16,
        act_offset: None,
    };
    /// The branch-free widening, inlined: no run-time CPU check per value
    /// (the scalar kernel widens every weight with it).
    #[inline]
    fn to_f32(self) -> f32 {
        widen(self.to_bits())
    }
    #[inline]
    fn le_to_f32(self) -> f32 {
        widen(u16::from_le(self.to_bits()))
    }
    /// Round to nearest even (`GGML_FP32_TO_FP16`); overflow gives ±inf.
    #[inline]
    fn from_f32_le(v: f32) -> Self {
        f16::from_bits(f16::from_f32(v).to_bits().to_le())
    }
    /// half's slice conversion (F16C when the CPU has it; same bits).
    fn from_f32_slice_le(x: &[f32], out: &mut [Self]) {
        use half::slice::HalfFloatSliceExt;
        out.convert_from_f32_slice(x);
        if cfg!(target_endian = "big") {
            for v in out.iter_mut() {
                *v = f16::from_bits(v.to_bits().to_le());
            }
        }
    }
    #[inline]
    fn is_non_finite(self) -> bool {
        self.to_bits() & 0x7C00 == 0x7C00
    }
    /// Each value widened by plain integer and float operations that
    /// vectorize in the load loops' clones (half's slice conversion calls
    /// an out-of-line F16C routine per 8 values).
    #[inline(always)]
    fn to_f32_slice(x: &[Self], out: &mut [f32]) {
        assert_eq!(x.len(), out.len(), "to_f32_slice: length mismatch");
        for (o, &h) in out.iter_mut().zip(x) {
            *o = widen(h.to_bits());
        }
    }
}

/// f16 bits to f32, exactly as `f16::to_f32` (and F16C) convert, without
/// branches: the exponent and mantissa moved into f32 position are a value
/// 2^-112 times the f16's (subnormals included: the f32 is then subnormal
/// and the product exact), so one multiplication by 2^112 rescales it;
/// infinities and NaN get the all-ones exponent, NaN with the quiet bit
/// set as F16C sets it; the sign is put back last.
#[inline(always)]
pub(crate) fn widen(h: u16) -> f32 {
    let h = h as u32;
    let em = h & 0x7FFF;
    let scaled = (f32::from_bits(em << 13) * f32::from_bits(0x7780_0000)).to_bits();
    let special = (em << 13) | 0x7F80_0000 | if em > 0x7C00 { 0x0040_0000 } else { 0 };
    let bits = if em >= 0x7C00 { special } else { scaled };
    f32::from_bits(bits | (h & 0x8000) << 16)
}

#[cfg(test)]
mod tests {
    #[test]
    fn widening_gives_half_s_bits_for_every_value() {
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32().to_bits();
            assert_eq!(super::widen(h).to_bits(), want, "{h:#06x}");
        }
    }
}
