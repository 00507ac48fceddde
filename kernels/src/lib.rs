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
//! - [`isa`]: ISA levels and cached CPU detection.
//! - `scalar`, `x86::*`, `aarch64::*`: one kernel table per ISA. A table has an
//!   activation quantizer and a tile kernel per weight format; a format an
//!   ISA has no kernel for runs the scalar one (same bits).
//! - [`Kernels`]: the table for one ISA plus the safe driver ([`Kernels::matmul`]),
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
//!    (Q4_1, Q5_1), as [`formats::FormatInfo::act_offset`] says.
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
//! widened) then add `acc = fma(m, da * (Σa as f32), acc)`, `da * Σa` one f32
//! multiply (`Σa = corr`, exact as f32). For F16 / BF16 / F32 weights:
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
pub mod formats;
pub mod isa;
pub mod mmap;
pub mod pack;
pub mod peak;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use act::ActBlock;
pub use formats::{
    BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, FormatInfo, UnknownFormat, WeightFormat,
    QK,
};
pub use isa::{Isa, UnknownIsa};
pub use pack::{PackedMatrix, NR};

use core::ops::Range;
use rayon::prelude::*;

/// Arguments of one tile kernel call: panels `p0..p0+np` x `mr` batch rows.
///
/// The driver guarantees, before any call: `p0 + np <= w.panels()`,
/// `acts.len() >= mr * nb` (block formats) or `x.len() >= mr * k` (float
/// formats), `tile.len() >= mr * np * NR`, and `xp` as its field says.
/// Kernels write raw accumulators (before bias) to
/// `tile[i * np * NR + pi * NR + r]`.
pub(crate) struct TileArgs<'a> {
    pub w: &'a PackedMatrix,
    pub p0: usize,
    pub np: usize,
    pub acts: &'a [ActBlock],
    pub x: &'a [f32],
    /// The tile's `mr` rows of `x` packed chunk-major, when the table asks for
    /// it (`pack_x`, float formats, batches of more than one row), else
    /// empty: the values of row `r` for k-steps `c * F16_KC..` start at
    /// `xp[(c * mr + r) * F16_KC]`, and
    /// `xp.len() >= ceil(k / F16_KC) * mr * F16_KC`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub xp: &'a [f32],
    pub mr: usize,
    pub tile: &'a mut [f32],
}

type TileFn = unsafe fn(&mut TileArgs);
type QuantizeFn = unsafe fn(&[f32], i32, &mut [ActBlock]);

/// A table's tile kernel per format (index `format as usize`); `None`: the
/// ISA has no kernel of its own for that format and the scalar one runs.
#[derive(Clone, Copy)]
pub(crate) struct Tiles([Option<TileFn>; WeightFormat::COUNT]);

impl Tiles {
    /// No kernel for any format.
    pub(crate) const NONE: Tiles = Tiles([None; WeightFormat::COUNT]);

    /// This table with `tile` as `format`'s kernel.
    pub(crate) const fn with(mut self, format: WeightFormat, tile: TileFn) -> Tiles {
        self.0[format as usize] = Some(tile);
        self
    }
}

/// The kernel table of one ISA. Obtaining one (through [`Kernels::for_isa`])
/// checks that the CPU has the ISA, so its functions may be called.
pub struct Kernels {
    isa: Isa,
    /// One row; `out.len() == ceil(x.len() / 32)` (checked by the caller).
    quantize_row: QuantizeFn,
    /// Tile kernels by format.
    tiles: Tiles,
    /// Panels per call when the batch has one row.
    gemv_panels: usize,
    /// Panels per call for batches (at most `MAX_GEMM_PANELS`).
    gemm_panels: usize,
    /// Whether batched float tiles read x packed chunk-major (`TileArgs::xp`):
    /// packed once per row group and thread, read by all the group's tiles.
    pack_x: bool,
}

/// Upper bound of [`Kernels`]' panels per batched call.
const MAX_GEMM_PANELS: usize = 8;

/// k-steps per chunk of the batched float kernels (the chunks of packed x;
/// F16 weights are widened to f32 a chunk at a time).
pub(crate) const F16_KC: usize = 128;

/// 16 f32 values on one cache line: the unit of the kernels' buffers, so that
/// their 64-byte vector loads and stores never straddle two lines.
#[repr(C, align(64))]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct F32Line(pub(crate) [f32; 16]);

std::thread_local! {
    /// Per-thread buffer of batched calls (tile, then packed x): too large
    /// for the stack of every thread a caller may use; grows to the largest
    /// call the thread has run, then is reused.
    static BATCH_BUF: core::cell::RefCell<BatchBuf> = const {
        core::cell::RefCell::new(BatchBuf { lines: Vec::new(), packed: None })
    };
}

/// Which rows of which `matmul` call a packed-x buffer holds:
/// `(call, first row, rows)`.
type PackedRows = Option<(u64, usize, usize)>;

/// The per-thread buffer of batched calls (tile, then packed x).
struct BatchBuf {
    lines: Vec<F32Line>,
    packed: PackedRows,
}

/// Numbers `matmul` calls (see `BatchBuf::packed`).
static CALLS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Batch rows per tile call (kernels split them into register tiles). Large, so
/// that a panel's weights are read from memory once for up to 128 rows.
pub(crate) const MAX_TILE_ROWS: usize = 128;

impl core::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Kernels").field("isa", &self.isa).finish()
    }
}

/// Why a kernel table cannot be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsaError {
    /// The CPU lacks a feature this ISA needs.
    NotSupported(Isa),
    /// This build has no kernels for this ISA (another architecture).
    NotCompiled(Isa),
}

impl core::fmt::Display for IsaError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IsaError::NotSupported(isa) => write!(
                f,
                "ISA {isa} needs CPU features [{}] that this CPU lacks; available: {}",
                isa.features(),
                available_names()
            ),
            IsaError::NotCompiled(isa) => write!(
                f,
                "ISA {isa} has no kernels in this build (other architecture); available: {}",
                available_names()
            ),
        }
    }
}

impl std::error::Error for IsaError {}

fn available_names() -> String {
    Isa::available()
        .into_iter()
        .filter(|&i| Kernels::is_compiled(i))
        .map(|i| i.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Activations handed to [`Kernels::matmul`].
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// Quantized rows (`m * ceil(k/32)` blocks), for block-format weights.
    Blocks(&'a [ActBlock]),
    /// Raw rows (`m * k` values), for float-format weights (F16, BF16, F32).
    Floats(&'a [f32]),
}

/// A shape or length that does not fit the weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeError(pub String);

impl core::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ShapeError {}

/// Below this many multiply-adds a matmul runs on the calling thread.
pub const PARALLEL_MIN_MACS: usize = 1 << 22;

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only to hand the output buffer to rayon tasks that write
// disjoint column ranges of it (see `Kernels::matmul`).
unsafe impl Send for SendPtr {}
// SAFETY: as above; no task reads what another writes.
unsafe impl Sync for SendPtr {}

impl Kernels {
    /// The table for `isa`, if this CPU runs it and this build has it.
    pub fn for_isa(isa: Isa) -> Result<&'static Kernels, IsaError> {
        let table = Self::compiled(isa).ok_or(IsaError::NotCompiled(isa))?;
        if !isa.is_supported() {
            return Err(IsaError::NotSupported(isa));
        }
        Ok(table)
    }

    /// The table of the best ISA this CPU runs.
    pub fn best() -> &'static Kernels {
        Isa::available()
            .into_iter()
            .rev()
            .find_map(|i| Self::for_isa(i).ok())
            .unwrap_or(&scalar::KERNELS)
    }

    fn compiled(isa: Isa) -> Option<&'static Kernels> {
        match isa {
            Isa::Scalar => Some(&scalar::KERNELS),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Some(&x86::avx2::plain::KERNELS),
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => Some(&x86::avx2::vnni::KERNELS),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Some(&x86::avx512::bw::KERNELS),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => Some(&x86::avx512::vnni::KERNELS),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => Some(&aarch64::NEON),
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDotprod => Some(&aarch64::DOTPROD),
            #[cfg(target_arch = "aarch64")]
            Isa::NeonI8mm => Some(&aarch64::I8MM),
            _ => None,
        }
    }

    /// Whether this build contains kernels for `isa` (regardless of the CPU).
    pub fn is_compiled(isa: Isa) -> bool {
        Self::compiled(isa).is_some()
    }

    /// The ISA of this table.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Whether this ISA has a kernel of its own for `format` (else the
    /// scalar kernel runs it, with the same bits).
    pub fn has_kernel(&self, format: WeightFormat) -> bool {
        self.tiles.0[format as usize].is_some()
    }

    /// The tile kernel for `format` and whether it is this ISA's own.
    fn tile(&self, format: WeightFormat) -> (TileFn, bool) {
        match self.tiles.0[format as usize] {
            Some(t) => (t, true),
            None => match scalar::KERNELS.tiles.0[format as usize] {
                Some(t) => (t, false),
                None => unreachable!("the scalar table has every format"),
            },
        }
    }

    /// Quantizes `m` rows of `k` values into `out` (`m * ceil(k/32)` blocks), for
    /// use with weights of the block format `format` (it sets [`ActBlock::corr`]).
    pub fn quantize_rows(
        &self,
        x: &[f32],
        k: usize,
        format: WeightFormat,
        out: &mut [ActBlock],
    ) -> Result<(), ShapeError> {
        let Some(offset) = format.info().act_offset else {
            return Err(ShapeError(format!(
                "quantize_rows: {format} weights take float input"
            )));
        };
        if k == 0 {
            return Err(ShapeError("quantize_rows: k must be > 0".into()));
        }
        let nb = k.div_ceil(QK);
        if !x.len().is_multiple_of(k) || out.len() != (x.len() / k) * nb {
            return Err(ShapeError(format!(
                "quantize_rows: {} values of rows of {k} need {} blocks, got {}",
                x.len(),
                (x.len() / k) * nb,
                out.len()
            )));
        }
        for (row, blocks) in x.chunks_exact(k).zip(out.chunks_exact_mut(nb)) {
            // SAFETY: `self` was handed out by `for_isa`, which checked the CPU
            // features of `self.isa`; `blocks.len() == ceil(row.len() / 32)`.
            unsafe { (self.quantize_row)(row, offset, blocks) };
        }
        Ok(())
    }

    /// `out[i, n] = Σ_k w[n, k] * input[i, k] (+ bias[n])` for the `m` rows of
    /// `input`, following the canonical arithmetic. `out` is `[m, w.n()]`.
    ///
    /// Work is split over output panels with rayon (in the current pool) when it
    /// is large enough; the result bits never depend on the split.
    pub fn matmul(
        &self,
        w: &PackedMatrix,
        input: Input<'_>,
        m: usize,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> Result<(), ShapeError> {
        let (n, k, nb) = (w.n(), w.k(), w.blocks_per_row());
        let fail = |what: &str, want: usize, got: usize| {
            Err(ShapeError(format!(
                "matmul: {what}: expected {want}, got {got}"
            )))
        };
        if m == 0 {
            return Err(ShapeError("matmul: batch must be > 0".into()));
        }
        let format = w.format();
        let (acts, x) = match (format.is_block_quantized(), input) {
            (true, Input::Blocks(a)) => (a, &[][..]),
            (false, Input::Floats(x)) => (&[][..], x),
            (block, _) => {
                return Err(ShapeError(format!(
                    "matmul: {format} weights need {} input",
                    if block {
                        "quantized (Blocks)"
                    } else {
                        "float (Floats)"
                    }
                )))
            }
        };
        let (func, native) = self.tile(format);
        if matches!(input, Input::Blocks(_)) && acts.len() != m * nb {
            return fail("activation blocks", m * nb, acts.len());
        }
        if matches!(input, Input::Floats(_)) && x.len() != m * k {
            return fail("input values", m * k, x.len());
        }
        if out.len() != m * n {
            return fail("output length", m * n, out.len());
        }
        if let Some(b) = bias {
            if b.len() != n {
                return fail("bias length", n, b.len());
            }
        }

        let panels = w.panels();
        let ptr = SendPtr(out.as_mut_ptr());
        // Names this call's x for the per-thread packed copies (a thread that
        // runs several tasks of one call packs each row group once).
        let call = CALLS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        let run = |p: Range<usize>, rows: Range<usize>| {
            // SAFETY (of the writes inside): each call covers panels `p` (output
            // columns [16 p.start, min(16 p.end, n))) of rows `rows`; calls never
            // overlap, and `out` outlives them (the borrow is held by `matmul`).
            self.run_tiles(func, native, w, acts, x, m, bias, ptr, p, rows, call);
        };
        let macs = m.saturating_mul(n).saturating_mul(k);
        let threads = rayon::current_num_threads();
        if macs < PARALLEL_MIN_MACS || threads == 1 {
            run(0..panels, 0..m);
        } else {
            // A few tasks per thread for balance: whole panels per task, and for
            // large batches on few panels, whole 32-row groups too.
            let want = threads * 4;
            const ROW_SPLIT: usize = 32;
            let row_tiles = m.div_ceil(ROW_SPLIT);
            let row_groups = if panels >= want {
                1
            } else {
                row_tiles.min(want.div_ceil(panels))
            };
            let rows_per = row_tiles.div_ceil(row_groups) * ROW_SPLIT;
            let panel_groups = want.div_ceil(row_groups).min(panels);
            let panels_per = panels.div_ceil(panel_groups);
            let (np, nr) = (panels.div_ceil(panels_per), m.div_ceil(rows_per));
            (0..np * nr).into_par_iter().for_each(|t| {
                let (pg, rg) = (t / nr, t % nr);
                run(
                    pg * panels_per..((pg + 1) * panels_per).min(panels),
                    rg * rows_per..((rg + 1) * rows_per).min(m),
                )
            });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn run_tiles(
        &self,
        func: TileFn,
        native: bool,
        w: &PackedMatrix,
        acts: &[ActBlock],
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        out: SendPtr,
        panels: Range<usize>,
        rows: Range<usize>,
        call: u64,
    ) {
        const TILE: usize = MAX_TILE_ROWS * MAX_GEMM_PANELS * NR;
        let (np, mr) = if m == 1 {
            (self.gemv_panels, 1)
        } else {
            (self.gemm_panels, MAX_TILE_ROWS)
        };
        debug_assert!(np * mr * NR <= TILE);
        let run = |np_mr, tile: &mut [f32], xp: (&mut [f32], &mut PackedRows, u64)| {
            let (p, r) = (panels.clone(), rows.clone());
            self.run_tiles_in(func, w, acts, x, bias, out, p, r, np_mr, tile, xp)
        };
        if m == 1 {
            // Batch 1 needs np * 16 values: on the stack, no scratch.
            let mut tile = [F32Line([0.0; 16]); 8 * NR / 16];
            let tile: &mut [f32] = bytemuck::cast_slice_mut(&mut tile);
            debug_assert!(np * NR <= tile.len());
            return run((np, 1), tile, (&mut [], &mut None, call));
        }
        // The scalar kernel (a fallback) reads x as it is.
        let xp_len = if self.pack_x && native && !x.is_empty() {
            rows.len().min(MAX_TILE_ROWS) * w.k().div_ceil(F16_KC) * F16_KC
        } else {
            0
        };
        BATCH_BUF.with(|buf| {
            let buf = &mut *buf.borrow_mut();
            let lines = (TILE + xp_len) / 16;
            if buf.lines.len() < lines {
                buf.lines.resize(lines, F32Line([0.0; 16]));
            }
            let floats: &mut [f32] = bytemuck::cast_slice_mut(&mut buf.lines[..lines]);
            let (tile, xp) = floats.split_at_mut(TILE);
            run((np, mr), tile, (xp, &mut buf.packed, call));
        });
    }

    /// `run_tiles` with its buffers: tile calls of up to `np` panels x `mr`
    /// rows. With a non-empty `xp_buf` (float formats, tables with `pack_x`)
    /// each group of `mr` rows is packed into it (unless `packed` says it
    /// holds them already), then runs all panels.
    #[allow(clippy::too_many_arguments)]
    fn run_tiles_in(
        &self,
        func: TileFn,
        w: &PackedMatrix,
        acts: &[ActBlock],
        x: &[f32],
        bias: Option<&[f32]>,
        out: SendPtr,
        panels: Range<usize>,
        rows: Range<usize>,
        (np, mr): (usize, usize),
        tile: &mut [f32],
        (xp_buf, packed, call): (&mut [f32], &mut PackedRows, u64),
    ) {
        let (n, k, nb) = (w.n(), w.k(), w.blocks_per_row());
        let mut tile_call = |p: usize, np: usize, i0: usize, mr: usize, xp: &[f32]| {
            let mut args = TileArgs {
                w,
                p0: p,
                np,
                acts: if acts.is_empty() {
                    acts
                } else {
                    &acts[i0 * nb..]
                },
                x: if x.is_empty() { x } else { &x[i0 * k..] },
                xp,
                mr,
                tile: &mut tile[..mr * np * NR],
            };
            // Every value the kernel must write starts as NaN: one it left
            // unwritten would otherwise keep a stale value of an earlier call
            // (the right one, when the same shape ran on another ISA just
            // before, as the differential tests do). Cheap: ~1/K of the
            // tile's multiply-adds.
            args.tile.fill(f32::NAN);
            // SAFETY: the table's ISA was checked at `for_isa`; matmul checked
            // acts/x hold m rows, so rows i0..i0+mr exist; p + np <= panels;
            // the tile holds mr * np * NR values; xp is empty or packs these
            // rows (pack_chunks).
            unsafe { func(&mut args) };
            let c0 = p * NR;
            let cols = (np * NR).min(n - c0);
            for i in 0..mr {
                let src = &tile[i * np * NR..i * np * NR + cols];
                let row = (i0 + i) * n + c0;
                // SAFETY: row + cols <= m * n = out.len(); this task owns
                // columns c0..c0+cols of every row (see `matmul`).
                let dst = unsafe { core::slice::from_raw_parts_mut(out.0.add(row), cols) };
                match bias {
                    Some(b) => {
                        for ((d, &s), &bv) in dst.iter_mut().zip(src).zip(&b[c0..c0 + cols]) {
                            *d = s + bv;
                        }
                    }
                    None => dst.copy_from_slice(src),
                }
            }
        };
        if xp_buf.is_empty() {
            // Panels outer: a panel group's weights stay in cache across the
            // row groups.
            let mut p = panels.start;
            while p < panels.end {
                let np = np.min(panels.end - p);
                let mut i0 = rows.start;
                while i0 < rows.end {
                    let mr = mr.min(rows.end - i0);
                    tile_call(p, np, i0, mr, &[]);
                    i0 += mr;
                }
                p += np;
            }
        } else {
            // Rows outer: a row group's x is packed once for all its tiles.
            let mut i0 = rows.start;
            while i0 < rows.end {
                let mr = mr.min(rows.end - i0);
                let len = k.div_ceil(F16_KC) * mr * F16_KC;
                if *packed != Some((call, i0, mr)) {
                    pack_chunks(&x[i0 * k..(i0 + mr) * k], k, &mut xp_buf[..len]);
                    *packed = Some((call, i0, mr));
                }
                let xp = &xp_buf[..len];
                let mut p = panels.start;
                while p < panels.end {
                    let np = np.min(panels.end - p);
                    tile_call(p, np, i0, mr, xp);
                    p += np;
                }
                i0 += mr;
            }
        }
    }
}

/// Packs rows of `k` values chunk-major into `buf` (the layout of
/// [`TileArgs::xp`]): consecutive rows of one chunk are adjacent, at a fixed
/// stride, so a tile's x loads never compete for the same cache sets (rows
/// of `k` floats are often a multiple of 4 KiB apart).
fn pack_chunks(x: &[f32], k: usize, xp: &mut [f32]) {
    let mr = x.len() / k;
    for (c, chunk) in xp.chunks_exact_mut(mr * F16_KC).enumerate() {
        let k0 = c * F16_KC;
        let kc = (k - k0).min(F16_KC);
        for (dst, row) in chunk.chunks_exact_mut(F16_KC).zip(x.chunks_exact(k)) {
            dst[..kc].copy_from_slice(&row[k0..k0 + kc]);
        }
    }
}

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
