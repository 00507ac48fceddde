//! The safe driver: shape checks, activation quantization, the split of a
//! matmul over rayon, per-thread buffers, the bias. It calls the tile kernels
//! of a [`Kernels`] table under the [`TileArgs`] contract.

use crate::act::ActBlock;
use crate::formats::{WeightFormat, QK};
use crate::pack::{PackedMatrix, NR};
use crate::tile::{F32Line, TileArgs, TileFn, F16_KC, MAX_GEMM_PANELS, MAX_TILE_ROWS};
use crate::Kernels;
use core::ops::Range;
use rayon::prelude::*;

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
