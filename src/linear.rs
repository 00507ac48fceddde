//! [`QuantizedLinear`]: `y = x·Wᵀ + b` with block-quantized `W`.

use crate::dispatch::{self, Isa};
use crate::{Error, QuantType};
use blockq_kernels::formats::{FloatElem, PackedBlock};
use blockq_kernels::load;
use blockq_kernels::mmap::zeroed_vec_huge;
use blockq_kernels::{
    match_format, ActBlock, BlockQ4_0, BlockQ8_0, Input, Kernels, PackedMatrix, QK, QK_K,
};
use bytemuck::Zeroable;
use half::{bf16, f16};
use std::cell::RefCell;

/// A linear layer whose weights are stored block-quantized (or as F16/F32),
/// packed once at construction into the layout the kernels read.
///
/// The API follows axonml-quant's `QuantizedLinear`; every panicking method has
/// a `try_` form returning [`Error`]. Results are bit-identical for every ISA,
/// thread count and batch size (see the crate docs).
#[derive(Clone)]
pub struct QuantizedLinear {
    /// Input features (row length of the weight matrix). Informational: the
    /// layer checks shapes against its packed weights.
    pub in_features: usize,
    /// Output features (rows of the weight matrix).
    pub out_features: usize,
    /// Weight storage format. Informational, like the dimensions: the layer
    /// runs, measures and serializes its packed weights, whatever this says.
    pub quant_type: QuantType,
    weights: PackedMatrix,
    bias: Option<Vec<f32>>,
    kernels: &'static Kernels,
}

impl core::fmt::Debug for QuantizedLinear {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("QuantizedLinear")
            .field("in_features", &self.in_features)
            .field("out_features", &self.out_features)
            .field("quant_type", &self.quant_type)
            .field("bias", &self.bias.is_some())
            .field("isa", &self.kernels.isa())
            .finish()
    }
}

fn check_dims(in_features: usize, out_features: usize) -> Result<usize, Error> {
    if in_features == 0 {
        return Err(Error::ZeroSize {
            what: "in_features",
        });
    }
    if out_features == 0 {
        return Err(Error::ZeroSize {
            what: "out_features",
        });
    }
    // The packed form pads rows to whole blocks (at most 256 values) and 16
    // rows; check those products too.
    let padded_in = in_features.div_ceil(QK_K).checked_mul(QK_K);
    let padded_out = out_features.div_ceil(16).checked_mul(16);
    match (padded_in, padded_out) {
        (Some(pi), Some(po)) if pi.checked_mul(po).and_then(|v| v.checked_mul(4)).is_some() => {
            Ok(in_features * out_features)
        }
        _ => Err(Error::SizeOverflow {
            what: "in_features * out_features",
        }),
    }
}

fn check_len(what: &'static str, expected: usize, actual: usize) -> Result<(), Error> {
    if expected != actual {
        return Err(Error::LengthMismatch {
            what,
            expected,
            actual,
        });
    }
    Ok(())
}

fn check_finite(what: &'static str, v: &[f32]) -> Result<(), Error> {
    match load::first_non_finite(v) {
        Some(index) => Err(Error::NonFinite {
            what,
            index,
            value: v[index],
        }),
        None => Ok(()),
    }
}

fn check_bias(bias: Option<&[f32]>, out_features: usize) -> Result<Option<Vec<f32>>, Error> {
    bias.map(|b| {
        check_len("bias", out_features, b.len())?;
        check_finite("bias", b)?;
        Ok(b.to_vec())
    })
    .transpose()
}

thread_local! {
    static SCRATCH: RefCell<Vec<ActBlock>> = const { RefCell::new(Vec::new()) };
}

impl QuantizedLinear {
    fn assemble(
        weights: PackedMatrix,
        bias: Option<Vec<f32>>,
        quant_type: QuantType,
    ) -> Result<Self, Error> {
        Ok(QuantizedLinear {
            in_features: weights.k(),
            out_features: weights.n(),
            quant_type,
            weights,
            bias,
            kernels: dispatch::kernels(dispatch::default_isa()?)?,
        })
    }

    /// Quantizes an f32 weight matrix (`[out_features, in_features]`, row-major)
    /// with llama.cpp's reference quantizer for `quant_type`.
    ///
    /// # Panics
    /// On any condition for which [`Self::try_from_linear_params`] returns an error,
    /// with that error's message.
    pub fn from_linear_params(
        weight: &[f32],
        bias: Option<&[f32]>,
        in_features: usize,
        out_features: usize,
        quant_type: QuantType,
    ) -> Self {
        Self::try_from_linear_params(weight, bias, in_features, out_features, quant_type)
            .unwrap_or_else(|e| panic!("QuantizedLinear::from_linear_params: {e}"))
    }

    /// Fallible [`Self::from_linear_params`]. Errors: zero or overflowing sizes,
    /// length mismatches, NaN/Inf weights or bias, and values too large for the
    /// format (block scale or f16 value overflowing f16).
    pub fn try_from_linear_params(
        weight: &[f32],
        bias: Option<&[f32]>,
        in_features: usize,
        out_features: usize,
        quant_type: QuantType,
    ) -> Result<Self, Error> {
        let total = check_dims(in_features, out_features)?;
        check_len("weight", total, weight.len())?;
        let bias = check_bias(bias, out_features)?;
        let (k, n) = (in_features, out_features);
        let weights = match_format!(
            quant_type,
            B => {
                // Each row is checked for NaN / Inf as it is quantized (one
                // read of the weights, not a separate pass).
                let packed = PackedMatrix::pack_blocks(n, k, |r, out: &mut [B]| {
                    let row = &weight[r * k..(r + 1) * k];
                    quantize_padded(row, out).map_err(|i| Error::NonFinite {
                        what: "weight",
                        index: r * k + i,
                        value: row[i],
                    })?;
                    finite_scales(quant_type, r, out, false)
                });
                match packed {
                    Ok(p) => p,
                    // A NaN / Inf anywhere is reported before a scale out
                    // of range in an earlier row, as a scan first would.
                    Err(e @ Error::OutOfRange { .. }) => {
                        check_finite("weight", weight)?;
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                }
            },
            E => {
                // Float formats: the f32 values rounded as ggml converts
                // them, a panel's rows at a time. A NaN / Inf weight
                // narrows to one, so the packing's check finds those too;
                // the weights are scanned only then, NaN / Inf being
                // reported before a value out of the format's range.
                match PackedMatrix::from_f32_narrowed::<E>(weight, n, k) {
                    Ok(m) => m,
                    Err(i) => {
                        check_finite("weight", weight)?;
                        return Err(Error::OutOfRange {
                            quant_type,
                            row: i / k,
                            block: i % k,
                        });
                    }
                }
            },
        );
        Self::assemble(weights, bias, quant_type)
    }

    /// A layer from GGUF Q8_0 blocks (`out_features * ceil(in_features/32)`
    /// blocks, row-major), used as they are: no re-quantization.
    pub fn from_q8_0_blocks(
        blocks: &[BlockQ8_0],
        bias: Option<&[f32]>,
        in_features: usize,
        out_features: usize,
    ) -> Result<Self, Error> {
        Self::from_blocks(blocks, bias, in_features, out_features)
    }

    /// A layer from GGUF Q4_0 blocks, used as they are.
    pub fn from_q4_0_blocks(
        blocks: &[BlockQ4_0],
        bias: Option<&[f32]>,
        in_features: usize,
        out_features: usize,
    ) -> Result<Self, Error> {
        Self::from_blocks(blocks, bias, in_features, out_features)
    }

    /// A layer from GGUF blocks of any block format (`out_features *
    /// ceil(in_features / block size)` blocks, row-major: 32 values per
    /// block, 256 for the k-quants), used as they are: no re-quantization.
    /// NaN/Inf scales are errors.
    pub fn from_blocks<B: PackedBlock>(
        blocks: &[B],
        bias: Option<&[f32]>,
        in_features: usize,
        out_features: usize,
    ) -> Result<Self, Error> {
        check_dims(in_features, out_features)?;
        let nb = in_features.div_ceil(B::VALUES);
        check_len("GGUF blocks", out_features * nb, blocks.len())?;
        // The blocks' bytes are the GGUF tensor's bytes.
        let bytes = bytemuck::cast_slice(blocks);
        Self::from_block_bytes::<B>(bytes, bias, in_features, out_features)
    }

    /// A layer from f16 weights (`[out_features, in_features]`), used as they are.
    pub fn from_f16(
        weight: &[f16],
        bias: Option<&[f32]>,
        in_features: usize,
        out_features: usize,
    ) -> Result<Self, Error> {
        Self::from_floats(weight, bias, in_features, out_features)
    }

    /// A layer from bf16 weights (`[out_features, in_features]`), used as they
    /// are (not widened: the kernels widen them exactly as they run).
    pub fn from_bf16(
        weight: &[bf16],
        bias: Option<&[f32]>,
        in_features: usize,
        out_features: usize,
    ) -> Result<Self, Error> {
        Self::from_floats(weight, bias, in_features, out_features)
    }

    /// A layer from weights of a float format (`f16`, `bf16` or `f32`,
    /// `[out_features, in_features]`), used as they are. NaN/Inf weights are
    /// errors.
    pub fn from_floats<E: FloatElem>(
        weight: &[E],
        bias: Option<&[f32]>,
        in_features: usize,
        out_features: usize,
    ) -> Result<Self, Error> {
        let total = check_dims(in_features, out_features)?;
        check_len("weight", total, weight.len())?;
        let bad = load::first_non_finite(weight).map(|i| (i, weight[i].to_f32()));
        Self::float_layer(E::FORMAT, bad, bias, in_features, out_features, || {
            PackedMatrix::from_floats(weight, out_features, in_features)
        })
    }

    /// A float-format layer: the NaN/Inf weight `(flat index, value)` in
    /// `bad`, if any, is an error (F32: [`Error::NonFinite`]; F16 / BF16, a
    /// stored value: [`Error::NonFiniteScale`] at its row and column); else
    /// the layer of `pack()` with the checked bias.
    fn float_layer(
        format: QuantType,
        bad: Option<(usize, f32)>,
        bias: Option<&[f32]>,
        in_features: usize,
        out_features: usize,
        pack: impl FnOnce() -> PackedMatrix,
    ) -> Result<Self, Error> {
        if let Some(bad) = bad {
            return Err(Self::non_finite(format, bad, in_features));
        }
        let bias = check_bias(bias, out_features)?;
        Self::assemble(pack(), bias, format)
    }

    /// The error for the non-finite weight `value` at `index` of a float
    /// format's row-major weights.
    fn non_finite(format: QuantType, (index, value): (usize, f32), in_features: usize) -> Error {
        if format == QuantType::F32 {
            Error::NonFinite {
                what: "weight",
                index,
                value,
            }
        } else {
            Error::NonFiniteScale {
                quant_type: format,
                row: index / in_features,
                block: index % in_features,
            }
        }
    }

    /// A layer from the raw bytes of a GGUF tensor of `quant_type` holding
    /// `[out_features, in_features]` (little-endian, as in the file). Any byte
    /// string is accepted or rejected with an error; NaN/Inf scales are errors.
    /// The arguments come in [`Self::from_linear_params`]' order, with the
    /// tensor's bytes in place of the f32 weights.
    pub fn from_gguf_bytes(
        bytes: &[u8],
        bias: Option<&[f32]>,
        in_features: usize,
        out_features: usize,
        quant_type: QuantType,
    ) -> Result<Self, Error> {
        check_dims(in_features, out_features)?;
        let row = quant_type.row_bytes(in_features);
        let expected = row.checked_mul(out_features).ok_or(Error::SizeOverflow {
            what: "tensor bytes",
        })?;
        check_len("GGUF tensor bytes", expected, bytes.len())?;
        // Packed straight from the bytes (no decoded copy of the tensor),
        // with the same checks and errors as the typed constructors.
        let (n, k) = (out_features, in_features);
        match_format!(
            quant_type,
            B => Self::from_block_bytes::<B>(bytes, bias, k, n),
            E => {
                const S: usize = core::mem::size_of::<E>();
                let w = bytemuck::cast_slice::<u8, [u8; S]>(bytes);
                let value = |b: [u8; S]| bytemuck::cast::<[u8; S], E>(b).le_to_f32();
                // Checked while packing (the bytes are read once), so a
                // bad value is found after the work rather than before it.
                match PackedMatrix::from_float_le_bytes_checked(quant_type, bytes, n, k) {
                    Ok(m) => Self::float_layer(quant_type, None, bias, k, n, || m),
                    Err(i) => Err(Self::non_finite(quant_type, (i, value(w[i])), k)),
                }
            },
        )
    }

    /// A block-format layer from the tensor's bytes (dimensions and length
    /// checked by the caller): each row's blocks are read from the bytes as
    /// the panels are packed.
    fn from_block_bytes<B: PackedBlock>(
        bytes: &[u8],
        bias: Option<&[f32]>,
        in_features: usize,
        out_features: usize,
    ) -> Result<Self, Error> {
        let bias = check_bias(bias, out_features)?;
        let quant_type = B::FORMAT;
        let row = quant_type.row_bytes(in_features);
        let w = PackedMatrix::pack_blocks(out_features, in_features, |r, out: &mut [B]| {
            let src = &bytes[r * row..(r + 1) * row];
            for (blk, b) in out
                .iter_mut()
                .zip(src.chunks_exact(core::mem::size_of::<B>()))
            {
                *blk = bytemuck::pod_read_unaligned(b);
            }
            finite_scales(quant_type, r, out, true)
        })?;
        Self::assemble(w, bias, quant_type)
    }

    /// The same layer run by `isa` (the weights move with it; nothing is
    /// copied). Errors if this CPU lacks `isa`.
    pub fn with_isa(mut self, isa: Isa) -> Result<Self, Error> {
        self.kernels = dispatch::kernels(isa)?;
        Ok(self)
    }

    /// Switches this layer to `isa` in place.
    pub fn set_isa(&mut self, isa: Isa) -> Result<(), Error> {
        self.kernels = dispatch::kernels(isa)?;
        Ok(())
    }

    /// The ISA whose kernels this layer runs.
    pub fn isa(&self) -> Isa {
        self.kernels.isa()
    }

    /// `[batch, in_features]` to `[batch, out_features]`.
    ///
    /// # Panics
    /// If `input.len() != batch_size * in_features` or `batch_size == 0`.
    pub fn forward_f32(&self, input: &[f32], batch_size: usize) -> Vec<f32> {
        self.try_forward_f32(input, batch_size)
            .unwrap_or_else(|e| panic!("QuantizedLinear::forward_f32: {e}"))
    }

    /// Fallible [`Self::forward_f32`].
    pub fn try_forward_f32(&self, input: &[f32], batch_size: usize) -> Result<Vec<f32>, Error> {
        // Validate the input first: a bad batch size must not allocate its output.
        self.check_input(input, batch_size)?;
        let len = batch_size
            .checked_mul(self.weights.n())
            .ok_or(Error::SizeOverflow {
                what: "batch_size * out_features",
            })?;
        let mut out = vec![0.0f32; len];
        self.forward_into(input, batch_size, &mut out)?;
        Ok(out)
    }

    /// Writes `[batch, out_features]` into `out`. Allocates nothing once the
    /// calling thread's activation scratch has grown to the batch size and,
    /// for batches, every thread that runs part of the call has its tile
    /// buffer (grown on the first batched tile that needs more). Large layers run on
    /// rayon's current pool; see the README on calls made from outside any
    /// pool.
    pub fn forward_into(
        &self,
        input: &[f32],
        batch_size: usize,
        out: &mut [f32],
    ) -> Result<(), Error> {
        let (n, k) = (self.weights.n(), self.weights.k());
        self.check_input(input, batch_size)?;
        let out_len = batch_size.checked_mul(n).ok_or(Error::SizeOverflow {
            what: "batch_size * out_features",
        })?;
        check_len("output", out_len, out.len())?;
        let bias = self.bias.as_deref();
        let shape_err =
            |e: blockq_kernels::ShapeError| -> Error { unreachable!("shapes were checked: {e}") };
        // The packed weights say what they are; the public `quant_type` field
        // is informational (a caller may overwrite it).
        if !self.weights.format().is_block_quantized() {
            return self
                .kernels
                .matmul(&self.weights, Input::Floats(input), batch_size, bias, out)
                .map_err(shape_err);
        }
        let nblocks = batch_size * k.div_ceil(QK);
        let mut run = |acts: &mut Vec<ActBlock>| {
            if acts.len() < nblocks {
                acts.resize(nblocks, ActBlock::zeroed());
            }
            let acts = &mut acts[..nblocks];
            self.kernels
                .quantize_rows(input, k, self.weights.format(), acts)
                .map_err(shape_err)?;
            self.kernels
                .matmul(&self.weights, Input::Blocks(acts), batch_size, bias, out)
                .map_err(shape_err)
        };
        SCRATCH.with(|s| match s.try_borrow_mut() {
            Ok(mut acts) => run(&mut acts),
            // Re-entered on this thread (e.g. a rayon worker stealing another
            // forward while it waits): use a private buffer.
            Err(_) => run(&mut Vec::new()),
        })
    }

    /// Checks `batch_size > 0` and `input.len() == batch_size * in_features`.
    fn check_input(&self, input: &[f32], batch_size: usize) -> Result<(), Error> {
        if batch_size == 0 {
            return Err(Error::ZeroSize { what: "batch_size" });
        }
        let in_len = batch_size
            .checked_mul(self.weights.k())
            .ok_or(Error::SizeOverflow {
                what: "batch_size * in_features",
            })?;
        check_len("input", in_len, input.len())
    }

    /// Bytes of the weights in their GGUF encoding (excluding bias and the
    /// padding of the last 16-row panel).
    pub fn weight_bytes(&self) -> usize {
        self.weights.format().row_bytes(self.weights.k()) * self.weights.n()
    }

    /// f32 weight bytes divided by [`Self::weight_bytes`].
    pub fn compression_ratio(&self) -> f32 {
        (self.weights.n() * self.weights.k() * 4) as f32 / self.weight_bytes() as f32
    }

    /// The weights as f32, `[out_features, in_features]` row-major, exactly as
    /// llama.cpp dequantizes them.
    ///
    /// Large matrices are dequantized on rayon's current pool.
    pub fn dequantize_weights(&self) -> Vec<f32> {
        let mut out = zeroed_vec_huge(self.weights.n() * self.weights.k());
        load::dequantize_matrix(&self.weights, &mut out);
        out
    }

    /// [`Self::dequantize_weights`] into `out` (`out_features * in_features`
    /// values; an error otherwise), which may be reused across calls.
    pub fn dequantize_weights_into(&self, out: &mut [f32]) -> Result<(), Error> {
        let len = self.weights.n() * self.weights.k();
        check_len("output", len, out.len())?;
        load::dequantize_matrix(&self.weights, out);
        Ok(())
    }

    /// The weights in their GGUF byte encoding (`[out_features]` rows of
    /// `row_bytes(in_features)` bytes of its format): the bytes the layer was built
    /// from, or that llama.cpp's quantizer would write.
    pub fn to_gguf_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.weight_bytes());
        for r in 0..self.weights.n() {
            self.weights.extend_row_bytes(r, &mut out);
        }
        out
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }

    /// The packed weights (for benchmarks and advanced use).
    pub fn packed(&self) -> &PackedMatrix {
        &self.weights
    }
}

/// Checks the f16 scales (and minimums) of one row's blocks: `stored` =
/// they came from the caller's blocks (NonFiniteScale) rather than from
/// quantizing (OutOfRange).
fn finite_scales<B: PackedBlock>(
    quant_type: QuantType,
    row: usize,
    blocks: &[B],
    stored: bool,
) -> Result<(), Error> {
    let bad = blocks
        .iter()
        .position(|b| b.scales()[..B::SCALES].iter().any(|d| !d.is_finite()));
    match bad {
        None => Ok(()),
        Some(block) if stored => Err(Error::NonFiniteScale {
            quant_type,
            row,
            block,
        }),
        Some(block) => Err(Error::OutOfRange {
            quant_type,
            row,
            block,
        }),
    }
}

/// Quantizes one weight row into its blocks with llama.cpp's reference
/// quantizer; a last, partial block is zero-padded (every block is quantized
/// on its own, so the bytes are those of quantizing the whole zero-padded
/// row). A NaN / Inf value stops it: its index in the row is the error.
fn quantize_padded<B: PackedBlock>(row: &[f32], out: &mut [B]) -> Result<(), usize> {
    let bs = B::VALUES;
    let whole = row.len() / bs;
    load::quantize_blocks_finite(&row[..whole * bs], &mut out[..whole])?;
    if let Some(i) = load::first_non_finite(&row[whole * bs..]) {
        return Err(whole * bs + i);
    }
    if let Some(last) = out.get_mut(whole) {
        let mut v = [0.0f32; QK_K];
        v[..row.len() - whole * bs].copy_from_slice(&row[whole * bs..]);
        *last = B::quantize(&v[..bs]);
    }
    Ok(())
}
