//! SIMD kernels for block-quantized linear layers, with bit-exact results.
//!
//! This crate holds all `unsafe` and `#[target_feature]` code of blockq, behind
//! safe entry points that check lengths and CPU support. Most users want the
//! `blockq` crate, which wraps it in `QuantizedLinear`.
//!
//! # Layout
//! - [`formats`]: one module per weight format (GGUF block type, llama.cpp's
//!   reference quantizer and dequantization, packed layout) and
//!   [`WeightFormat`], the table of formats everything else reads.
//! - [`act`]: the canonical int8 quantization of activation rows.
//! - [`pack`]: the one packed weight layout (16-row panels) all ISAs read.
//! - [`load`]: the load-time loops (quantizers, dequantization, f16 / bf16
//!   conversions, NaN / Inf scans), compiled per ISA level with `multiversion`.
//! - [`isa`]: ISA levels and cached CPU detection.
//! - [`ops`]: a transformer's row operations around the layers (RMSNorm,
//!   SwiGLU, attention over a KV cache), each one fixed f32 sequence, in
//!   the load loops' clones.
//! - `scalar`, `x86::*`, `aarch64::*`: one kernel table per ISA. A table has an
//!   activation quantizer and a tile kernel per weight format; a format an
//!   ISA has no kernel for runs the scalar one (same bits). The x86 tiles are
//!   written once (`x86::tiles`) over a register width and an integer dot
//!   (`x86::simd`); `x86::avx2` and `x86::avx512` supply those and the tiling.
//! - `tile`: the tile contract (`TileArgs`, the per-format `Tiles` of a table).
//! - `registry`: [`Kernels`], the table of one ISA, and which table serves
//!   which [`Isa`] ([`Kernels::for_isa`]).
//! - `driver`: the safe driver ([`Kernels::matmul`], [`Kernels::quantize_rows`]),
//!   which validates shapes, splits work over rayon and adds the bias.
//! - [`peak`]: register-only int8 and FMA loops that measure the CPU's peaks.
//! - [`mmap`]: read-only file mappings (for GGUF files).
//!
//! # The canonical arithmetic (the determinism contract)
//! Every ISA, thread count, tiling and batch size produces the same bits as the
//! scalar kernels, because each output is computed by this exact sequence:
//!
//! **Activations** (block-format weights). Each input row is cut into
//! 32-blocks, the last one padded with +0.0. Per block:
//! 1. `a = max_j (bits(x_j) & 0x7FFF_FFFF)` (integer max of |x| bit patterns;
//!    exact, order-free, and NaN/Inf sort above every finite value).
//! 2. If `a >= 0x7F80_0000` (the block holds NaN or ±Inf): `d = NaN`, all codes 0.
//!    Else if `a < bits(2^-120)`: `d = 0`, all codes 0. Else, with
//!    `amax = from_bits(a)`: `d = amax / 127` and `id = 127 / amax` (each one
//!    correctly rounded f32 division), and `q_j = round_half_even(x_j * id)`
//!    (one f32 multiply). Codes lie in -127..=127. The block also keeps an
//!    exact i32 `corr`: `-offset * Σ q_j` for formats whose codes carry an
//!    offset (Q8_0 128, Q4_0 8, Q5_0 16), `Σ q_j` for formats with a minimum
//!    (Q4_1, Q5_1) and the k-quants, as [`formats::FormatInfo::act_offset`]
//!    says; the halves' sums `Σ_{j<16} q_j`, `Σ_{j>=16} q_j`; and `dsum = d *
//!    (Σ q_j as f32)` (one f32 multiply, exact operand), the `m` term's
//!    factor, made once per block rather than per weight row. One
//!    quantization per input row serves every format: a k-quant super-block
//!    meets its 8 activation blocks one 32-value sub-block each.
//!
//! **Block dot products.** For weight row `n` and block `b`, with the
//! unsigned stored codes `u_j` (Q8_0 `q + 128`, Q4_0 / Q4_1 the nibble, Q5_0 /
//! Q5_1 the 5-bit code): `raw = Σ_j u_j * a_q[j]` exactly in i32, and
//! `isum = raw + corr` (offset formats: exactly `Σ (u_j - offset) * a_q[j]`)
//! or `isum = raw` (formats with a minimum).
//!
//! **Accumulation.** One f32 accumulator per output, starting at +0.0, blocks in
//! increasing order: `acc = fma(dw * da, isum as f32, acc)`, where `dw` is the
//! f16 block scale widened to f32 (exact), `dw * da` one f32 multiply, and
//! `isum as f32` exact (|isum| < 2^24). Formats with a minimum `m` (f16,
//! widened) then add `acc = fma(m, dsum, acc)` (`dsum = da * (Σa as f32)`,
//! above).
//!
//! **Super-blocks** (Q4_K, Q5_K, Q6_K: 256 values) contribute one 32-value
//! sub-block at a time, in order, each against its activation block
//! ([`formats::SubScale`]). Q4_K / Q5_K sub-block `s` is a Q4_1 / Q5_1
//! block whose scale and minimum are `dw = d * sc_s` and `m = -(dmin *
//! mn_s)`: the f16 `d` / `dmin` widened times the 6-bit integer, exact in
//! f32 (11 + 6 significant bits), so the sequence above is unchanged. Q6_K
//! sub-block `s` has two int8 scales `s0`, `s1` for its halves: `isum = s0 *
//! Σ_{j<16} (u_j - 32) a_q[j] + s1 * Σ_{j>=16} (u_j - 32) a_q[j]`, exact in
//! i32 (|isum| <= 2 * 128 * 16 * 32 * 127 < 2^24), then `acc = fma(d * da,
//! isum as f32, acc)` with `d` the super-block's f16 scale widened (the
//! activation block's `half_sums` give the halves' `-32 * Σa`; x86 forms
//! `isum` in f32, exactly: each product and the sum are integers below
//! 2^24). Rows whose
//! length is not a multiple of 256 are padded to whole super-blocks with
//! zeros (as the 32-value formats pad to whole blocks); sub-blocks past
//! `ceil(k / 32)` are not visited. For F16 / BF16 / F32 weights:
//! `acc = fma(w_k, x_k, acc)` for `k = 0..K` in order, `w_k` widened exactly.
//!
//! **Output.** `y = acc + bias[n]` (one f32 add) when there is a bias, else
//! `y = acc`.
//!
//! NaN outputs are NaN on every path; which NaN bit pattern comes out when
//! several meet is left to the hardware (IEEE 754 does not fix it), so tests
//! compare bit patterns with all NaNs treated as one value.
//!
//! SIMD kernels vectorize across the 16 rows of a panel (one lane per output),
//! so every lane performs the sequence above in the same order; integer dot
//! products use unsigned weight codes and subtract `offset * Σ a` exactly
//! (through `corr`), which keeps `vpdpbusd` free of saturation for all inputs.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod act;
mod driver;
pub mod formats;
pub mod isa;
pub mod load;
pub mod mmap;
pub mod ops;
pub mod pack;
pub mod peak;
mod registry;
mod scalar;
mod tile;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use act::ActBlock;
pub use driver::{Input, ShapeError, PARALLEL_MIN_MACS};
pub use formats::{
    BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0,
    FormatInfo, UnknownFormat, WeightFormat, QK, QK_K,
};
pub use isa::{Isa, UnknownIsa};
pub use pack::{PackedMatrix, NR};
pub use registry::{IsaError, Kernels};
#[cfg(target_arch = "x86_64")]
pub(crate) use tile::{F32Line, F16_KC, MAX_TILE_ROWS};
pub(crate) use tile::{TileArgs, Tiles};

/// Compares two f32 slices bit for bit, with every NaN equal to every NaN.
/// Returns the first index that differs.
pub fn first_difference(a: &[f32], b: &[f32]) -> Option<usize> {
    if a.len() != b.len() {
        return Some(a.len().min(b.len()));
    }
    a.iter()
        .zip(b)
        .position(|(x, y)| !(x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())))
}
