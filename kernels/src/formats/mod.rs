//! The weight formats: one module per format, one table of facts about them.
//!
//! Each module holds its GGUF block type (`#[repr(C)]`, [`bytemuck::Pod`],
//! byte-for-byte what a GGUF file holds), its ggml type id and sizes,
//! llama.cpp's reference quantizer and dequantization (same bytes, same f32
//! values), and how its blocks sit in the packed panels ([`PackedBlock`]) or
//! how its values are widened ([`FloatElem`]). The canonical arithmetic of
//! the kernels (crate docs) is written once over these traits; a format only
//! says what its codes and scales are.
//!
//! [`WeightFormat`] is the table every other file reads: [`WeightFormat::ALL`],
//! [`WeightFormat::info`], and [`match_format!`](crate::match_format), the one
//! `match` from a format to its Rust type. Adding a format means a module
//! here, one line in each of those three places, and (optionally) kernels.
//!
//! Quantizers follow llama.cpp's C reference as compiled for x86-64: float
//! to 8-bit integer conversions of out-of-range values (infinite or NaN
//! products, which happen when `1 / d` overflows for blocks of values below
//! about 1e-37) give the low byte of `cvttss2si`'s "integer indefinite"
//! `0x8000_0000`, that is code 0 ([`c_f32_to_i8`]); Rust's saturating `as`
//! would give 127 or -128.

use bytemuck::Pod;
use core::fmt;
use core::str::FromStr;
use half::f16;

pub(crate) mod bf16;
mod f16_fmt;
mod f32_fmt;
mod kquant;
// The search results of the x86 explicit-SIMD quantizers.
#[cfg(target_arch = "x86_64")]
pub(crate) use kquant::{MinSearch, QxSearch, WithMin, GROUP_MAX_EPS};
mod q4_0;
mod q4_1;
mod q4_k;
mod q5_0;
mod q5_1;
mod q5_k;
mod q6_k;
mod q8_0;

pub use self::bf16::{dequantize_row_bf16, quantize_row_bf16};
pub use q4_0::{dequantize_row_q4_0, quantize_block_q4_0, quantize_row_q4_0, BlockQ4_0};
pub use q4_1::{dequantize_row_q4_1, quantize_block_q4_1, quantize_row_q4_1, BlockQ4_1};
pub use q4_k::{dequantize_row_q4_k, quantize_block_q4_k, quantize_row_q4_k, BlockQ4_K};
pub use q5_0::{dequantize_row_q5_0, quantize_block_q5_0, quantize_row_q5_0, BlockQ5_0};
pub use q5_1::{dequantize_row_q5_1, quantize_block_q5_1, quantize_row_q5_1, BlockQ5_1};
pub use q5_k::{dequantize_row_q5_k, quantize_block_q5_k, quantize_row_q5_k, BlockQ5_K};
pub use q6_k::{dequantize_row_q6_k, quantize_block_q6_k, quantize_row_q6_k, BlockQ6_K};
pub use q8_0::{dequantize_row_q8_0, quantize_block_q8_0, quantize_row_q8_0, BlockQ8_0};

/// Values in one block of the 32-value formats, in one sub-block of the
/// super-block formats, and in one activation block.
pub const QK: usize = 32;

/// Values in one super-block of the k-quant formats (Q4_K, Q5_K, Q6_K).
pub const QK_K: usize = 256;

/// Storage format of a weight matrix (`QuantType` in the `blockq` crate).
#[allow(non_camel_case_types)] // ggml's names: Q4_K, Q6_K
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WeightFormat {
    /// GGUF Q8_0: 32 int8 codes and an f16 scale; value `d * q`.
    Q8_0,
    /// GGUF Q4_0: 32 4-bit codes and an f16 scale; value `d * (q - 8)`.
    Q4_0,
    /// GGUF Q4_1: 32 4-bit codes, f16 scale and minimum; value `d * q + m`.
    Q4_1,
    /// GGUF Q5_0: 32 5-bit codes and an f16 scale; value `d * (q - 16)`.
    Q5_0,
    /// GGUF Q5_1: 32 5-bit codes, f16 scale and minimum; value `d * q + m`.
    Q5_1,
    /// GGUF Q4_K: super-blocks of 256 4-bit codes in 8 sub-blocks of 32 with
    /// 6-bit scales and minimums, f16 `d` and `dmin`; value `d*sc*q - dmin*m`.
    Q4_K,
    /// GGUF Q5_K: as Q4_K with 5-bit codes.
    Q5_K,
    /// GGUF Q6_K: super-blocks of 256 6-bit codes in 16 groups of 16 with
    /// int8 scales, f16 `d`; value `d * sc * (q - 32)`.
    Q6_K,
    /// IEEE half precision.
    F16,
    /// bfloat16 (the upper half of an f32).
    BF16,
    /// IEEE single precision (unquantized).
    F32,
}

/// Facts about one format (ggml's `type_traits` row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FormatInfo {
    /// ggml's name ("Q4_1", "BF16", ...): also the canonical spelling.
    pub name: &'static str,
    /// Other accepted spellings (case-insensitive), as axonml-quant has them.
    pub aliases: &'static [&'static str],
    /// The GGML type id in GGUF files.
    pub ggml_type: u32,
    /// Values per block (1 for float formats).
    pub block_size: usize,
    /// Bytes per block in GGUF.
    pub block_bytes: usize,
    /// Nominal bits per value (scales not counted), as axonml-quant reports it.
    pub bits_per_value: usize,
    /// Block formats: the unsigned offset of the stored codes (value code =
    /// stored - offset), or `-1` for formats with a minimum and the
    /// super-block formats, whose kernels take the plain sum of the
    /// activation codes (see [`ActBlock::corr`](crate::ActBlock::corr)).
    /// Float formats (float input, no activation quantization): `None`.
    pub act_offset: Option<i32>,
}

/// Dispatches from a [`WeightFormat`] value to its Rust type: in the first
/// arm `$B` is the block type of a block format, in the second `$E` the
/// element type of a float format. The one place that maps formats to types.
#[macro_export]
macro_rules! match_format {
    ($f:expr, $B:ident => $block:expr, $E:ident => $float:expr $(,)?) => {
        match $f {
            $crate::formats::WeightFormat::Q8_0 => {
                #[allow(dead_code)]
                type $B = $crate::formats::BlockQ8_0;
                $block
            }
            $crate::formats::WeightFormat::Q4_0 => {
                #[allow(dead_code)]
                type $B = $crate::formats::BlockQ4_0;
                $block
            }
            $crate::formats::WeightFormat::Q4_1 => {
                #[allow(dead_code)]
                type $B = $crate::formats::BlockQ4_1;
                $block
            }
            $crate::formats::WeightFormat::Q5_0 => {
                #[allow(dead_code)]
                type $B = $crate::formats::BlockQ5_0;
                $block
            }
            $crate::formats::WeightFormat::Q5_1 => {
                #[allow(dead_code)]
                type $B = $crate::formats::BlockQ5_1;
                $block
            }
            $crate::formats::WeightFormat::Q4_K => {
                #[allow(dead_code)]
                type $B = $crate::formats::BlockQ4_K;
                $block
            }
            $crate::formats::WeightFormat::Q5_K => {
                #[allow(dead_code)]
                type $B = $crate::formats::BlockQ5_K;
                $block
            }
            $crate::formats::WeightFormat::Q6_K => {
                #[allow(dead_code)]
                type $B = $crate::formats::BlockQ6_K;
                $block
            }
            $crate::formats::WeightFormat::F16 => {
                #[allow(dead_code)]
                type $E = half::f16;
                $float
            }
            $crate::formats::WeightFormat::BF16 => {
                #[allow(dead_code)]
                type $E = half::bf16;
                $float
            }
            $crate::formats::WeightFormat::F32 => {
                #[allow(dead_code)]
                type $E = f32;
                $float
            }
        }
    };
}

impl WeightFormat {
    /// Every format, in table order (the index of a format is `f as usize`).
    pub const ALL: [WeightFormat; 11] = [
        WeightFormat::Q8_0,
        WeightFormat::Q4_0,
        WeightFormat::Q4_1,
        WeightFormat::Q5_0,
        WeightFormat::Q5_1,
        WeightFormat::Q4_K,
        WeightFormat::Q5_K,
        WeightFormat::Q6_K,
        WeightFormat::F16,
        WeightFormat::BF16,
        WeightFormat::F32,
    ];

    /// Number of formats.
    pub const COUNT: usize = Self::ALL.len();

    /// This format's facts.
    pub const fn info(self) -> &'static FormatInfo {
        match_format!(self, B => &B::INFO, E => &E::INFO)
    }

    /// ggml's name of the format ("Q8_0", "Q4_1", "BF16", ...).
    pub const fn name(self) -> &'static str {
        self.info().name
    }

    /// The GGML type id.
    pub const fn ggml_type(self) -> u32 {
        self.info().ggml_type
    }

    /// The format of GGML type id `id`, if blockq runs it.
    pub fn from_ggml_type(id: u32) -> Option<WeightFormat> {
        Self::ALL.into_iter().find(|f| f.ggml_type() == id)
    }

    /// Values per block (32, 256 for the k-quants, 1 for floats).
    pub const fn block_size(self) -> usize {
        self.info().block_size
    }

    /// Bytes per block, as stored in GGUF.
    pub const fn bytes_per_block(self) -> usize {
        self.info().block_bytes
    }

    /// Nominal bits per value (scales not counted), as axonml-quant reports it.
    pub const fn bits_per_value(self) -> usize {
        self.info().bits_per_value
    }

    /// f32 bytes per GGUF byte of this format (scales counted): 32 bits
    /// divided by the stored bits per value.
    pub fn compression_ratio(self) -> f32 {
        (self.block_size() * 4) as f32 / self.bytes_per_block() as f32
    }

    /// Whether values are stored in blocks with shared scales (and the
    /// kernels take int8-quantized activations).
    pub const fn is_block_quantized(self) -> bool {
        self.info().act_offset.is_some()
    }

    /// Bytes of one row of `k` values (blocks padded to whole blocks).
    pub const fn row_bytes(self, k: usize) -> usize {
        k.div_ceil(self.block_size()) * self.bytes_per_block()
    }

    /// The accepted spellings of every format, for error messages.
    pub fn spellings() -> impl Iterator<Item = &'static str> {
        Self::ALL
            .into_iter()
            .flat_map(|f| core::iter::once(f.name()).chain(f.info().aliases.iter().copied()))
    }

    /// llama.cpp's reference quantization (or f32 conversion) of `x` into GGUF
    /// bytes: `x.len()` must be a multiple of [`Self::block_size`] and
    /// `out.len() == self.row_bytes(x.len())`. Panics otherwise.
    pub fn quantize_to_bytes(self, x: &[f32], out: &mut [u8]) {
        let bs = self.block_size();
        assert!(
            x.len().is_multiple_of(bs) && out.len() == self.row_bytes(x.len()),
            "{self}: quantize_to_bytes of {} values into {} bytes",
            x.len(),
            out.len()
        );
        match_format!(
            self,
            B => {
                for (xb, ob) in x.chunks_exact(B::VALUES).zip(out.chunks_exact_mut(B::INFO.block_bytes)) {
                    ob.copy_from_slice(bytemuck::bytes_of(&B::quantize(xb)));
                }
            },
            E => {
                for (&v, ob) in x.iter().zip(out.chunks_exact_mut(E::INFO.block_bytes)) {
                    ob.copy_from_slice(bytemuck::bytes_of(&E::from_f32_le(v)));
                }
            },
        )
    }

    /// llama.cpp's dequantization of GGUF bytes (any alignment) into `out`:
    /// `bytes.len() == self.row_bytes(out.len())`, `out.len()` a multiple of
    /// [`Self::block_size`]. Panics otherwise.
    pub fn dequantize_bytes(self, bytes: &[u8], out: &mut [f32]) {
        let bs = self.block_size();
        assert!(
            out.len().is_multiple_of(bs) && bytes.len() == self.row_bytes(out.len()),
            "{self}: dequantize_bytes of {} bytes into {} values",
            bytes.len(),
            out.len()
        );
        match_format!(
            self,
            B => {
                for (b, o) in bytes.chunks_exact(B::INFO.block_bytes).zip(out.chunks_exact_mut(B::VALUES)) {
                    bytemuck::pod_read_unaligned::<B>(b).dequantize(o);
                }
            },
            E => {
                for (b, o) in bytes.chunks_exact(E::INFO.block_bytes).zip(out.iter_mut()) {
                    *o = bytemuck::pod_read_unaligned::<E>(b).le_to_f32();
                }
            },
        )
    }
}

impl fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A format name that [`WeightFormat::from_str`] does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = WeightFormat::spellings().collect();
        write!(
            f,
            "unknown quantization type {:?}; expected one of: {}",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownFormat {}

impl FromStr for WeightFormat {
    type Err = UnknownFormat;

    /// ggml's names and axonml-quant's spellings, case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let up = s.trim().to_ascii_uppercase();
        Self::ALL
            .into_iter()
            .find(|f| f.name() == up || f.info().aliases.contains(&up.as_str()))
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

/// llama.cpp's `quantize_row_*_ref` for blocks of `B`: `x.len()` must equal
/// `out.len() * B::VALUES` (panics otherwise).
pub(crate) fn quantize_blocks<B: PackedBlock>(x: &[f32], out: &mut [B]) {
    assert_eq!(
        x.len(),
        out.len() * B::VALUES,
        "quantize_row_{}: length mismatch",
        B::INFO.name.to_lowercase()
    );
    crate::load::quantize_blocks(x, out)
}

/// llama.cpp's `dequantize_row_*` for blocks of `B`: `out.len()` must equal
/// `blocks.len() * B::VALUES` (panics otherwise).
pub(crate) fn dequantize_blocks<B: PackedBlock>(blocks: &[B], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * B::VALUES,
        "dequantize_row_{}: length mismatch",
        B::INFO.name.to_lowercase()
    );
    crate::load::dequantize_blocks(blocks, out)
}

/// The row functions of a block format, named as llama.cpp names them:
/// `quantize_row_*` (`quantize_row_*_ref`: `x.len()` must equal
/// `out.len()` times the block size), `quantize_block_*` and
/// `dequantize_row_*` (`out.len()` must equal `blocks.len()` times the block
/// size); they panic on a length mismatch.
macro_rules! row_functions {
    ($block:ty, $name:literal, $quantize_row:ident, $quantize_block:ident, $dequantize_row:ident) => {
        super::row_functions!($block, $name, 32, $quantize_row, $quantize_block, $dequantize_row);
    };
    ($block:ty, $name:literal, $values:literal, $quantize_row:ident, $quantize_block:ident, $dequantize_row:ident) => {
        #[doc = concat!("`quantize_row_", $name, "_ref`: `x.len()` must equal `out.len() * ", $values, "` (panics otherwise).")]
        pub fn $quantize_row(x: &[f32], out: &mut [$block]) {
            super::quantize_blocks(x, out)
        }

        #[doc = concat!("One ", $name, " block, as llama.cpp's reference quantizer makes it.")]
        pub fn $quantize_block(x: &[f32; $values]) -> $block {
            <$block as PackedBlock>::quantize(x)
        }

        #[doc = concat!("`dequantize_row_", $name, "`: `out.len()` must equal `blocks.len() * ", $values, "`.")]
        pub fn $dequantize_row(blocks: &[$block], out: &mut [f32]) {
            super::dequantize_blocks(blocks, out)
        }
    };
}
pub(crate) use row_functions;

/// Byte equality for block types (so -0.0 and NaN scales compare as stored).
macro_rules! bytewise_eq {
    ($t:ty) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                bytemuck::bytes_of(self) == bytemuck::bytes_of(other)
            }
        }
        impl Eq for $t {}
    };
}
pub(crate) use bytewise_eq;

/// [`PackedBlock::packed_group`] and [`PackedBlock::packed_groups`] of a
/// 32-value 5-bit block type with GGUF fields `qs` and `qh` (Q5_0, Q5_1):
/// [`q5_packed_group`], all five groups at once by [`q5_packed_groups`].
macro_rules! q5_packing {
    () => {
        #[inline(always)]
        fn packed_group(&self, c: usize) -> [u8; 4] {
            super::q5_packed_group(&self.qs, u32::from_le_bytes(self.qh), c)
        }
        #[inline(always)]
        fn packed_groups(&self, mut put: impl FnMut(usize, [u8; 4])) {
            let g = super::q5_packed_groups(&self.qs, u32::from_le_bytes(self.qh));
            for (c, g) in g.into_iter().enumerate() {
                put(c, g);
            }
        }
    };
}
pub(crate) use q5_packing;

/// A block format as stored in the packed panels (see [`crate::pack`]):
/// 32-value blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) and 256-value
/// super-blocks (Q4_K, Q5_K, Q6_K).
///
/// A block's packed form is `GROUPS` 4-byte lane groups of codes (group `c`
/// of a row in chunk `c` of the block), and in the panel's scales region
/// `SCALES` f16 scales (`d`, then `m` or `dmin`) and `SCALE_GROUPS` lane
/// groups of sub-block scales. Codes are unsigned (`ucode`); what
/// they mean is each 32-value sub-block's [`SubScale`]: `d * (ucode -
/// OFFSET)`, `d * ucode + m`, or (Q6_K) `d * s_h * (ucode - 32)` with one
/// integer scale `s_h` per 16-value half.
pub trait PackedBlock: Pod + Send + Sync + PartialEq + fmt::Debug {
    /// The format of these blocks.
    const FORMAT: WeightFormat;
    /// The format's facts.
    const INFO: FormatInfo;
    /// Values per block: 32, or [`QK_K`] for the super-block formats.
    const VALUES: usize = Self::INFO.block_size;
    /// 4-byte lane groups of codes per block.
    const GROUPS: usize;
    /// Lane groups of sub-block scales (k-quants: 4, the 16 bytes of
    /// sub-block scales), [`Self::packed_group`] `GROUPS..GROUPS +
    /// SCALE_GROUPS`, stored in the panel's scales region.
    const SCALE_GROUPS: usize = 0;
    /// f16 scales per block: 1 (`d`) or 2 (`d`, then `m` or `dmin`).
    const SCALES: usize;
    /// Unsigned offset of the codes (0 for formats with a minimum).
    const OFFSET: i32;
    /// The block's f16 scales (`[d, m]`, `[d, dmin]`; zero when absent).
    fn scales(&self) -> [f16; 2];
    /// Stored bytes of lane group `c`.
    fn packed_group(&self, c: usize) -> [u8; 4];
    /// `put(c, self.packed_group(c))` for every code group `c` in
    /// `0..GROUPS`, in order: the packing loop's form, which the 5-bit
    /// formats override to share the work of a chunk's groups.
    #[inline(always)]
    fn packed_groups(&self, mut put: impl FnMut(usize, [u8; 4])) {
        for c in 0..Self::GROUPS {
            put(c, self.packed_group(c));
        }
    }
    /// The block back from its scales and stored lane groups.
    fn from_packed(scales: [f16; 2], group: impl Fn(usize) -> [u8; 4]) -> Self;
    /// [`Self::dequantize`] of [`Self::from_packed`]: the values of a block
    /// in its packed form. The k-quants override it to read the codes
    /// straight from the groups (same values, no GGUF block rebuilt).
    #[inline(always)]
    fn dequantize_packed(scales: [f16; 2], group: impl Fn(usize) -> [u8; 4], out: &mut [f32]) {
        Self::from_packed(scales, group).dequantize(out)
    }
    /// Unsigned code of element `j` (0..VALUES).
    fn ucode(&self, j: usize) -> u8;
    /// The scales of 32-value sub-block `s` (0..VALUES / 32) as the
    /// canonical arithmetic uses them (crate docs).
    #[inline]
    fn sub_scale(&self, s: usize) -> SubScale {
        debug_assert!(s == 0 && Self::VALUES == QK);
        let [d, m] = self.scales().map(f16::to_f32);
        if Self::SCALES == 1 {
            SubScale::Offset { d }
        } else {
            SubScale::Min { d, m }
        }
    }
    /// The block of padding rows: scales 0, every code meaning 0.
    fn padding() -> Self;
    /// llama.cpp's reference quantizer for one block (`x.len() == VALUES`;
    /// panics otherwise).
    fn quantize(x: &[f32]) -> Self;
    /// [`Self::quantize`]'s bytes, written so that the compiler vectorizes
    /// it (order-free integer reductions; blocks where the reference's
    /// order matters, with NaN or -0.0, take [`Self::quantize`]). The
    /// row loops of [`crate::load`] use it.
    #[inline(always)]
    fn quantize_vectorized(x: &[f32]) -> Self {
        Self::quantize(x)
    }
    /// llama.cpp's dequantization of one block (`out.len() == VALUES`;
    /// panics otherwise).
    fn dequantize(&self, out: &mut [f32]);
}

/// What the codes of one 32-value sub-block mean, as f32 values exactly
/// derived from the block's stored scales (see the crate docs' canonical
/// arithmetic).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SubScale {
    /// Value `d * (ucode - OFFSET)` (Q8_0, Q4_0, Q5_0).
    Offset {
        /// The f16 block scale, widened.
        d: f32,
    },
    /// Value `d * ucode + m` (Q4_1, Q5_1: the f16 scales widened; Q4_K,
    /// Q5_K: `d = d16 * sc`, `m = -(dmin16 * mn)`, both exact in f32).
    Min {
        /// The sub-block's scale.
        d: f32,
        /// The sub-block's minimum (added).
        m: f32,
    },
    /// Value `d * s[h] * (ucode - 32)` for half `h` (elements `16h..16h+16`)
    /// of the sub-block (Q6_K: `d` the f16 super-block scale widened, `s`
    /// the int8 scales of the two 16-value groups).
    Halves {
        /// The super-block's scale.
        d: f32,
        /// The integer scales of the two halves.
        s: [i32; 2],
    },
}

/// A float format's element (f16, bf16, f32), as stored in GGUF
/// (little-endian) and in the packed panels.
pub trait FloatElem: Pod + Send + Sync {
    /// The format of these values.
    const FORMAT: WeightFormat;
    /// The format's facts.
    const INFO: FormatInfo;
    /// The value (native byte order) as f32, exactly.
    fn to_f32(self) -> f32;
    /// The value whose native bytes are `self`'s little-endian bytes, as f32.
    fn le_to_f32(self) -> f32;
    /// ggml's conversion from f32, as little-endian bytes in native order.
    fn from_f32_le(v: f32) -> Self;
    /// [`Self::from_f32_le`] of a row (`x.len() == out.len()`, panics
    /// otherwise); formats override it with a vectorized form.
    #[inline(always)]
    fn from_f32_slice_le(x: &[f32], out: &mut [Self]) {
        assert_eq!(x.len(), out.len(), "from_f32_slice_le: length mismatch");
        for (o, &v) in out.iter_mut().zip(x) {
            *o = Self::from_f32_le(v);
        }
    }
    /// Whether the (native order) value is NaN or infinite.
    fn is_non_finite(self) -> bool;
    /// [`Self::to_f32`] of a row (`x.len() == out.len()`, panics
    /// otherwise); formats override it with a vectorized form.
    #[inline(always)]
    fn to_f32_slice(x: &[Self], out: &mut [f32]) {
        assert_eq!(x.len(), out.len(), "to_f32_slice: length mismatch");
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v.to_f32();
        }
    }
}

/// C's `(int8_t)v` for a float `v` as x86-64 compilers build it
/// (`cvttss2si` to 32 bits, then the low byte): truncation toward zero, and
/// code 0 for NaN and for values outside the i32 range.
#[inline(always)]
pub fn c_f32_to_i8(v: f32) -> i8 {
    // -2^31 <= v < 2^31 is exactly the range cvttss2si converts; `|v| <
    // 2^31` leaves out -2^31 too, whose low byte is 0 anyway. A select and
    // an unchecked conversion, so that loops of it vectorize (Rust's
    // saturating `as` is scalarized).
    let w = if v.abs() < 2147483648.0 { v } else { 0.0 };
    // SAFETY: `w` is finite with |w| < 2^31, so its truncation fits an i32.
    unsafe { w.to_int_unchecked::<i32>() as i8 }
}

/// `f16::from_f32` (round to nearest even, as F16C and ggml convert) in
/// plain Rust that inlines: no run-time CPU check and call per value, for
/// the per-block scales of the load-time loops. Same bits (tested on every
/// f16 boundary and on random f32).
#[inline(always)]
pub(crate) fn f16_from_f32(v: f32) -> f16 {
    f16::from_f32_const(v)
}

/// `f16::to_f32` in plain Rust that inlines (see [`f16_from_f32`]): the
/// branch-free widening the F16 slice conversion uses; exact.
#[inline(always)]
pub(crate) fn f16_to_f32(h: f16) -> f32 {
    f16_fmt::widen(h.to_bits())
}

/// Element `j` (0..32) of a 16-byte nibble array in GGUF order: the low
/// nibble of `qs[j]` for `j < 16`, the high nibble of `qs[j - 16]` after.
#[inline]
pub(crate) fn nibble(qs: &[u8; 16], j: usize) -> u8 {
    let byte = qs[j % 16];
    if j < 16 {
        byte & 0x0F
    } else {
        byte >> 4
    }
}

/// Bit `j` of the little-endian `qh` of Q5_0 / Q5_1, as 0x10 or 0.
#[inline]
pub(crate) fn high_bit(qh: &[u8; 4], j: usize) -> u8 {
    ((u32::from_le_bytes(*qh) >> j) << 4) as u8 & 0x10
}

/// Little-endian 32-bit word `k` of `b` (bytes `4k..4k + 4`): the unit of
/// the packing's word operations on GGUF byte runs.
#[inline(always)]
pub(crate) fn word(b: &[u8], k: usize) -> u32 {
    u32::from_le_bytes(b[4 * k..][..4].try_into().unwrap())
}

/// Bits 0, 8, 16 and 24 of `x` (its only set bits) moved to bits 0..4 (the
/// four products of the multiply land on distinct bits, none carries into
/// bits 24..28).
#[inline(always)]
fn gather4(x: u32) -> u32 {
    x.wrapping_mul(0x0102_0408) >> 24
}

/// Packed lane group `c` (0..5) of a 5-bit block (Q5_0, Q5_1, and each
/// 32-value sub-block of Q5_K), from its GGUF nibbles and fifth bits
/// (`qs`, and `qh` with bit `e` for element `e`).
///
/// Byte `i` of group `c < 4` holds element `4c + i`'s 5-bit code in bits
/// 0..5 and bits 2..5 of element `16 + 4c + i`'s in bits 5..8; byte `i` of
/// group 4 holds bits 0..2 of element `16 + 4c + i`'s code at bits
/// `2c..2c + 2`. So a kernel gets the first code vector of a chunk with one
/// mask, and the second with a mask, a shift, a shift of group 4 and one
/// merge (see [`crate::pack`]).
#[inline(always)]
pub(crate) fn q5_packed_group(qs: &[u8; 16], qh: u32, c: usize) -> [u8; 4] {
    q5_packed_groups(qs, qh)[c]
}

/// Every byte `x` with its bit `j` moved to bit 4 of byte `j`.
const FIFTH_BITS: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut x = 0;
    while x < 256 {
        let mut j = 0;
        while j < 8 {
            t[x] |= ((x as u64 >> j) & 1) << (8 * j + 4);
            j += 1;
        }
        x += 1;
    }
    t
};

/// All five [`q5_packed_group`]s, two chunks per 64-bit word: the codes of
/// elements `8h..8h + 8` (word `h` of the low codes) and `16 + 8h..` (of
/// the high codes) take their fifth bits from `qh` byte `h` and `2 + h`.
#[inline(always)]
pub(crate) fn q5_packed_groups(qs: &[u8; 16], qh: u32) -> [[u8; 4]; 5] {
    const NIB: u64 = 0x0F0F_0F0F_0F0F_0F0F;
    let [h0, h1, h2, h3] = qh.to_le_bytes().map(|b| FIFTH_BITS[b as usize]);
    let w = |h: usize| u64::from_le_bytes(qs[8 * h..8 * h + 8].try_into().unwrap());
    let (lo, hi) = (
        [w(0) & NIB | h0, w(1) & NIB | h1],
        [(w(0) >> 4) & NIB | h2, (w(1) >> 4) & NIB | h3],
    );
    // `hi >> 2` moves bits of byte i + 1 into bits 6..8 of byte i: masked.
    let g = |h: usize| lo[h] | ((hi[h] >> 2) & 0x0707_0707_0707_0707) << 5;
    let low2 = |h: usize| hi[h] & 0x0303_0303_0303_0303;
    let g4 = low2(0) | (low2(0) >> 32) << 2 | low2(1) << 4 | (low2(1) >> 32) << 6;
    let (g0, g1) = (g(0), g(1));
    [g0, g0 >> 32, g1, g1 >> 32, g4].map(|v| (v as u32).to_le_bytes())
}

/// The GGUF nibbles and fifth bits of five packed 5-bit lane groups (the
/// inverse of [`q5_packed_group`]).
#[inline(always)]
pub(crate) fn q5_from_groups(group: impl Fn(usize) -> [u8; 4]) -> ([u8; 16], u32) {
    let g4 = u32::from_le_bytes(group(4));
    let (mut qs, mut qh) = ([0u8; 16], 0u32);
    for c in 0..4 {
        let w = u32::from_le_bytes(group(c));
        let lo = w & 0x1F1F_1F1F;
        let hi = ((w >> 5) & 0x0707_0707) << 2 | ((g4 >> (2 * c)) & 0x0303_0303);
        let nib = (lo & 0x0F0F_0F0F) | (hi & 0x0F0F_0F0F) << 4;
        qs[4 * c..4 * c + 4].copy_from_slice(&nib.to_le_bytes());
        qh |= gather4((lo >> 4) & 0x0101_0101) << (4 * c);
        qh |= gather4((hi >> 4) & 0x0101_0101) << (16 + 4 * c);
    }
    (qs, qh)
}

/// The 32 codes of five packed 5-bit lane groups starting at group `first`.
#[inline(always)]
pub(crate) fn q5_codes(group: &impl Fn(usize) -> [u8; 4], first: usize) -> [u8; QK] {
    let high = group(first + 4);
    let mut out = [0u8; QK];
    for c in 0..4 {
        let g = group(first + c);
        for i in 0..4 {
            out[4 * c + i] = g[i] & 0x1F;
            out[16 + 4 * c + i] = (g[i] >> 5) << 2 | ((high[i] >> (2 * c)) & 3);
        }
    }
    out
}

/// Stored bytes of Q4 lane group `c` (0..4): GGUF bytes `4c..4c+4`.
#[inline]
pub(crate) fn nibble_group(qs: &[u8; 16], c: usize) -> [u8; 4] {
    qs[4 * c..4 * c + 4].try_into().unwrap()
}

/// The 16 GGUF nibble bytes from the 4 stored lane groups.
#[inline]
pub(crate) fn nibbles_from_groups(group: &impl Fn(usize) -> [u8; 4]) -> [u8; 16] {
    core::array::from_fn(|j| group(j / 4)[j % 4])
}

/// Sets element `j`'s 5-bit code in GGUF nibbles and `qh` (as llama.cpp's
/// Q5 quantizers do).
#[inline]
pub(crate) fn set_code5(qs: &mut [u8; 16], qh: &mut u32, j: usize, code: u8) {
    if j < 16 {
        qs[j] |= code & 0x0F;
    } else {
        qs[j - 16] |= (code & 0x0F) << 4;
    }
    *qh |= (((code & 0x10) >> 4) as u32) << j;
}

/// Min and max of a block as llama.cpp's Q4_1 / Q5_1 find them (comparisons
/// in order, from `FLT_MAX` / `-FLT_MAX`).
#[inline]
pub(crate) fn min_max(x: &[f32; QK]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// The value of largest magnitude, the first one on ties (llama.cpp's Q4_0 /
/// Q5_0 search: `if (amax < fabsf(v))`).
#[inline]
pub(crate) fn signed_max(x: &[f32; QK]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// The largest `bits(v) & 0x7FFF_FFFF` of a block (`|v|` as an integer: above
/// `0x7F80_0000` the block holds a NaN). Order-free, so it vectorizes.
#[inline(always)]
pub(crate) fn max_abs_bits(x: &[f32; QK]) -> u32 {
    x.iter().fold(0, |m, v| m.max(v.to_bits() & 0x7FFF_FFFF))
}

/// [`signed_max`] without its sequential search: the largest non-NaN `|v|`
/// as an integer max, and the sign of the first element that has it.
#[inline(always)]
pub(crate) fn signed_max_vectorized(x: &[f32; QK]) -> f32 {
    // |v| as integers, NaN as 0 (NaN never wins `amax < fabsf(v)`), kept in
    // one array so that each step below is one vector operation.
    let mut abs = [0u32; QK];
    for (a, v) in abs.iter_mut().zip(x) {
        let b = v.to_bits() & 0x7FFF_FFFF;
        *a = if b > 0x7F80_0000 { 0 } else { b };
    }
    let m = abs.iter().fold(0, |m, &a| m.max(a));
    if m == 0 {
        // `max` keeps its initial +0.0.
        return 0.0;
    }
    let mut hits = 0u32;
    for (j, &a) in abs.iter().enumerate() {
        hits |= ((a == m) as u32) << j;
    }
    let first = hits.trailing_zeros() as usize;
    f32::from_bits(m | (x[first].to_bits() & 0x8000_0000))
}

/// [`min_max`] as order-free integer reductions (`None` when the block
/// holds a NaN or a -0.0, where the reference's comparison order matters).
/// Without those, equal values have equal bits and the integer key below
/// orders floats as `<` does.
#[inline(always)]
pub(crate) fn min_max_vectorized(x: &[f32; QK]) -> Option<(f32, f32)> {
    // Sign-magnitude to two's complement: monotonic in the float value.
    let key = |b: u32| (b ^ ((((b as i32) >> 31) as u32) >> 1)) as i32;
    let unkey = |k: i32| f32::from_bits((k ^ ((k >> 31) as u32 >> 1) as i32) as u32);
    let (mut lo, mut hi, mut odd) = (key(f32::MAX.to_bits()), key((-f32::MAX).to_bits()), false);
    for v in x {
        let b = v.to_bits();
        odd |= (b & 0x7FFF_FFFF) > 0x7F80_0000 || b == 0x8000_0000;
        lo = lo.min(key(b));
        hi = hi.max(key(b));
    }
    (!odd).then(|| (unkey(lo), unkey(hi)))
}

/// GGUF nibble bytes from 32 codes in 0..16 (element `j` in the low nibble
/// of byte `j`, element `j + 16` in its high nibble): the low byte of
/// `c[j] | c[j + 16] << 4`, as the reference stores it (unmasked).
///
/// The codes stay in the i32 lanes their float conversion gives: from
/// bytes, the compiler packed the nibbles and the fifth bits value by value
/// (a byte extract per code); from i32 lanes it keeps whole vectors, and
/// the Q5_0 / Q5_1 quantizers ran 10% / 23% faster on AVX-512.
#[inline(always)]
pub(crate) fn pack_nibbles(codes: &[i32; QK]) -> [u8; 16] {
    nibble_bytes::<{ !0 }>(codes)
}

/// The low byte of `(c[j] & MASK) | (c[j + 16] & MASK) << 4` for `j` in
/// `0..16`: one expression for the unmasked Q4 nibbles and the masked Q5
/// ones (a separate masking pass over the codes, `codes.map(..)`, undid
/// the i32 lanes' gain).
#[inline(always)]
fn nibble_bytes<const MASK: i32>(codes: &[i32; QK]) -> [u8; 16] {
    core::array::from_fn(|j| ((codes[j] & MASK) | ((codes[j + 16] & MASK) << 4)) as u8)
}

/// [`set_code5`] of 32 codes at once (as i32, see [`pack_nibbles`]): the
/// nibbles `c & 0x0F` and `qh` bit `j` = bit 4 of `c[j]`, as
/// `quantize_row_q5_*_ref` masks them.
#[inline(always)]
pub(crate) fn pack_code5(codes: &[i32; QK]) -> ([u8; 16], u32) {
    let mut qh = 0u32;
    for (j, &c) in codes.iter().enumerate() {
        qh |= ((c & 0x10 != 0) as u32) << j;
    }
    (nibble_bytes::<0x0F>(codes), qh)
}

/// `id = d ? 1.0f/d : 0.0f`.
#[inline]
pub(crate) fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block of any bytes (codes, high bits and scales of every value),
    /// from the xorshift state `x`.
    pub(crate) fn random_block<B: Pod>(x: &mut u64) -> B {
        let mut b = B::zeroed();
        for byte in bytemuck::bytes_of_mut(&mut b) {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *byte = (*x >> 24) as u8;
        }
        b
    }

    #[test]
    fn q5_groups_hold_each_code_where_the_layout_says_and_unpack() {
        // Each bit alone, then strides through the patterns of qs and qh.
        let mut cases = Vec::new();
        for e in 0..QK {
            cases.push(([0u8; 16], 1u32 << e));
        }
        for b in 0..128 {
            let mut qs = [0u8; 16];
            qs[b / 8] = 1 << (b % 8);
            cases.push((qs, 0));
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let qs: [u8; 16] = core::array::from_fn(|i| (x >> (4 * (i % 16))) as u8 ^ i as u8);
            cases.push((qs, (x >> 17) as u32));
        }
        for (qs, qh) in cases {
            let code = |e: usize| nibble(&qs, e) | high_bit(&qh.to_le_bytes(), e);
            let g = q5_packed_groups(&qs, qh);
            for e in 0..QK {
                let (c, i) = ((e % 16) / 4, e % 4);
                let stored = if e < 16 {
                    g[c][i] & 0x1F
                } else {
                    (g[c][i] >> 5) << 2 | (g[4][i] >> (2 * c)) & 3
                };
                assert_eq!(stored, code(e), "element {e}");
            }
            assert_eq!(q5_codes(&|c| g[c], 0), core::array::from_fn(code));
            assert_eq!(q5_from_groups(|c| g[c]), (qs, qh));
        }
        // Element 16 + 4 + 1 = 21 (code 0b11011): byte 1 of group 1 holds
        // bits 2..5 (0b110) at 5..8, byte 1 of group 4 bits 0..2 at 2..4.
        let (mut qs, qh) = ([0u8; 16], 1u32 << 21);
        qs[5] = 0xB0;
        assert_eq!(
            q5_packed_groups(&qs, qh),
            [[0; 4], [0, 0xC0, 0, 0], [0; 4], [0; 4], [0, 0b1100, 0, 0]]
        );
    }

    #[test]
    fn inlined_f16_conversions_give_half_s_bits() {
        for h in 0..=u16::MAX {
            let h = f16::from_bits(h);
            assert_eq!(f16_to_f32(h).to_bits(), h.to_f32().to_bits(), "{h:?}");
        }
        // Every f32 around each f16 boundary and rounding tie, then a
        // stride through all bit patterns (NaN payloads included).
        let check = |b: u32| {
            let v = f32::from_bits(b);
            assert_eq!(
                f16_from_f32(v).to_bits(),
                f16::from_f32(v).to_bits(),
                "{b:#x}"
            );
        };
        for h in 0..=u16::MAX {
            let centre = f16::from_bits(h).to_f32().to_bits();
            for b in centre.saturating_sub(4096)..=centre.saturating_add(4096) {
                check(b);
            }
        }
        for b in (0..=u32::MAX).step_by(9973) {
            check(b);
        }
    }

    #[test]
    fn table_is_consistent() {
        for (i, f) in WeightFormat::ALL.into_iter().enumerate() {
            assert_eq!(f as usize, i);
            assert_eq!(f.name().parse::<WeightFormat>().unwrap(), f);
            assert_eq!(f.name().to_lowercase().parse::<WeightFormat>().unwrap(), f);
            for a in f.info().aliases {
                assert_eq!(a.parse::<WeightFormat>().unwrap(), f, "{a}");
            }
            assert_eq!(WeightFormat::from_ggml_type(f.ggml_type()), Some(f));
            match_format!(
                f,
                B => {
                    assert_eq!(B::FORMAT, f);
                    assert_eq!(core::mem::size_of::<B>(), f.bytes_per_block());
                    assert_eq!(B::VALUES, B::INFO.block_size);
                    const { assert!(B::VALUES == QK || B::VALUES == QK_K) };
                    if B::VALUES == QK {
                        // The packed layout holds exactly the GGUF bytes.
                        assert_eq!(B::GROUPS * 4 + B::SCALES * 2, f.bytes_per_block());
                        assert_eq!(B::INFO.act_offset, Some(if B::SCALES == 2 { -1 } else { B::OFFSET }));
                    } else {
                        // The 6-bit scales of Q4_K / Q5_K are unpacked to bytes.
                        let packed = (B::GROUPS + B::SCALE_GROUPS) * 4 + B::SCALES * 2;
                        assert!(packed == f.bytes_per_block() || packed == f.bytes_per_block() + 4);
                        assert_eq!(B::INFO.act_offset, Some(-1));
                    }
                },
                E => {
                    assert_eq!(E::FORMAT, f);
                    assert_eq!(core::mem::size_of::<E>(), f.bytes_per_block());
                },
            );
        }
        let names: Vec<_> = WeightFormat::ALL.iter().map(|f| f.name()).collect();
        let mut dedup = names.clone();
        dedup.dedup();
        assert_eq!(names, dedup);
        let e = "q3_k".parse::<WeightFormat>().unwrap_err().to_string();
        assert!(
            e.contains("q3_k") && e.contains("Q4_1") && e.contains("Q6_K") && e.contains("BF16"),
            "{e}"
        );
    }

    #[test]
    fn every_block_format_packs_its_groups_alike_one_by_one_and_all_at_once() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for f in WeightFormat::ALL {
            match_format!(
                f,
                B => {
                    for _ in 0..500 {
                        let b: B = random_block(&mut x);
                        let mut all = Vec::new();
                        b.packed_groups(|c, g| all.push((c, g)));
                        let one_by_one: Vec<_> = (0..B::GROUPS).map(|c| (c, b.packed_group(c))).collect();
                        assert_eq!(all, one_by_one, "{f}");
                    }
                },
                _E => {},
            );
        }
    }

    #[test]
    fn c_conversion_matches_x86() {
        assert_eq!(c_f32_to_i8(f32::INFINITY), 0);
        assert_eq!(c_f32_to_i8(f32::NEG_INFINITY), 0);
        assert_eq!(c_f32_to_i8(f32::NAN), 0);
        assert_eq!(c_f32_to_i8(3e9), 0);
        assert_eq!(c_f32_to_i8(16.9), 16);
        assert_eq!(c_f32_to_i8(-7.9), -7);
        assert_eq!(c_f32_to_i8(200.0), -56);
        assert_eq!(c_f32_to_i8(-2147483648.0), 0);
        assert_eq!(c_f32_to_i8(2147483520.0), -128);
    }
}
