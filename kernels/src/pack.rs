//! The packed weight layout shared by every ISA.
//!
//! Weights are stored once, as panels of [`NR`] = 16 output rows. Every kernel
//! (scalar, AVX2, AVX-512, NEON) reads this one layout, so a layer can be run by
//! any ISA and the tests can compare them on the same bytes.
//!
//! Per panel (each panel starts on a 64-byte boundary), for `nb = ceil(k / 32)`
//! (the 32-value formats) or `nb = ceil(k / 256)` (the k-quants):
//!
//! | format | codes region | scales region |
//! |--------|--------------|---------------|
//! | Q8_0   | `nb` x 8 chunks x 64 B: chunk `c`, lane `r` holds `qs[4c..4c+4]` of row `r`, each XOR 0x80 (so `u8 = q + 128`) | `nb` x 16 f16 (`d`) |
//! | Q4_0   | `nb` x 4 chunks x 64 B: chunk `c`, lane `r` holds GGUF bytes `qs[4c..4c+4]` of row `r` (low nibble: element `4c+i`, high: `16+4c+i`) | `nb` x 16 f16 |
//! | Q4_1   | as Q4_0 | `nb` x (16 f16 `d`, then 16 f16 `m`) |
//! | Q5_0   | `nb` x 5 chunks x 64 B of whole 5-bit codes: lane `r` byte `i` of chunk `c` < 4 holds row `r`'s code of element `4c + i` in bits 0..5 and bits 2..5 of element `16 + 4c + i`'s in bits 5..8; chunk 4 byte `i` the low two bits of element `16 + 4c + i`'s at bits `2c..2c + 2` (`formats::q5_packed_group`) | `nb` x 16 f16 |
//! | Q5_1   | as Q5_0 | as Q4_1 |
//! | Q4_K   | `nb` x 8 sub-blocks x 4 chunks: each 32-value sub-block as Q4_1 | `nb` x (16 f16 `d`, 16 f16 `dmin`, then 16 x 16 B: byte `t` of row `r` at `16 t + r`, `t` < 8 the sub-block scales, then the minimums) |
//! | Q5_K   | `nb` x 8 x 5 chunks: each sub-block as Q5_1 | as Q4_K |
//! | Q6_K   | `nb` x 8 x 6 chunks: per sub-block 4 nibble chunks (low 4 bits, as Q4_0) and 2 of 2-bit high parts (chunk `4 + h`, lane byte `i`, bits `2j..2j+2`: element `16h + 4j + i`) | `nb` x (16 f16 `d`, then 16 x 16 B int8 scales) |
//! | F16    | `k` x 16 f16 (one k-step: the 16 rows' values) | none |
//! | BF16   | `k` x 16 bf16 | none |
//! | F32    | `k` x 16 f32 | none |
//!
//! A "lane" is 4 bytes: the i32 lane of `vpdpbusd`/`sdot` that sums 4 products of
//! one row. A block format's chunks and scales are its [`PackedBlock`] lane
//! groups and scales (the k-quant chunks: [`crate::formats`]' `kquant`
//! module docs). Codes are unsigned (Q8: `q + 128`, Q4_0: `q + 8`, Q5_0:
//! `q + 16`, the formats with a minimum: as stored); kernels undo the offset
//! exactly with the activation block sums. Rows past `n` in the last panel
//! hold [`PackedBlock::padding`] blocks (scale 0, codes meaning 0) or zeros.
//! The packed bytes have exactly the size of the GGUF blocks (plus that row
//! padding; Q4_K and Q5_K hold their twelve bytes of 6-bit scales as
//! sixteen bytes): no second copy is kept.

use crate::formats::{BlockQ4_0, BlockQ8_0, FloatElem, QK};
pub use crate::formats::{PackedBlock, WeightFormat};
use crate::load::PanelPacker;
use crate::match_format;
use half::{bf16, f16};
use rayon::prelude::*;

/// Output rows per panel.
pub const NR: usize = 16;
/// Matrices of at least this many packed bytes are packed on the rayon
/// pool, panels in parallel; smaller ones on the calling thread (a rayon job
/// costs more than packing them).
const PARALLEL_BYTES: usize = 256 << 10;
/// Bytes of Q8_0 codes per panel and block.
pub const Q8_CODE_BYTES: usize = NR * QK;
/// Bytes of Q4_0 codes per panel and block.
pub const Q4_CODE_BYTES: usize = NR * QK / 2;

/// Block `b` of lane (row) `r` of a panel whose scales start at `so`: its
/// lane groups and scales read back into the GGUF block.
#[inline(always)]
pub(crate) fn panel_block<B: PackedBlock>(panel: &[u8], so: usize, b: usize, r: usize) -> B {
    let (scales, groups) = panel_groups::<B>(panel, so, b, r);
    B::from_packed(scales, |c| groups[c])
}

/// The values of block `b` of lane `r` (as [`panel_block`] then
/// `dequantize`), through [`PackedBlock::dequantize_packed`].
#[inline(always)]
pub(crate) fn dequantize_panel_block<B: PackedBlock>(
    panel: &[u8],
    so: usize,
    b: usize,
    r: usize,
    out: &mut [f32],
) {
    let (scales, groups) = panel_groups::<B>(panel, so, b, r);
    B::dequantize_packed(scales, |c| groups[c], out)
}

/// Block `b` of lane `r`'s f16 scales and lane groups (codes, then the
/// k-quants' scale groups), gathered with plain loads into an array, so
/// that the formats' `from_packed` / `dequantize_packed` only index it
/// (and inline into the load loops' clones).
#[inline(always)]
fn panel_groups<B: PackedBlock>(
    panel: &[u8],
    so: usize,
    b: usize,
    r: usize,
) -> ([f16; 2], [[u8; 4]; MAX_GROUPS]) {
    const { assert!(B::GROUPS + B::SCALE_GROUPS <= MAX_GROUPS) };
    let codes = b * B::GROUPS * 64 + r * 4;
    let scales = so + b * scale_bytes::<B>();
    let sc = |s: usize| {
        let o = scales + (s * NR + r) * 2;
        f16::from_le_bytes([panel[o], panel[o + 1]])
    };
    let small = scales + B::SCALES * NR * 2;
    let mut groups = [[0u8; 4]; MAX_GROUPS];
    for (c, g) in groups[..B::GROUPS].iter_mut().enumerate() {
        *g = panel[codes + c * 64..codes + c * 64 + 4]
            .try_into()
            .unwrap();
    }
    for (t, g) in groups[B::GROUPS..B::GROUPS + B::SCALE_GROUPS]
        .iter_mut()
        .enumerate()
    {
        *g = core::array::from_fn(|i| panel[small + (4 * t + i) * NR + r]);
    }
    let scales = [sc(0), if B::SCALES > 1 { sc(1) } else { f16::ZERO }];
    (scales, groups)
}

/// The most lane groups a block has (Q6_K: 48 code groups and 4 of scales).
const MAX_GROUPS: usize = 64;

/// Bytes of a block's scales region in a panel: the f16 scales of its 16
/// rows, then (k-quants) their sub-block scale bytes, byte `t` of the
/// [`PackedBlock::SCALE_GROUPS`] of row `r` at `t * 16 + r`.
pub(crate) const fn scale_bytes<B: PackedBlock>() -> usize {
    (B::SCALES * 2 + B::SCALE_GROUPS * 4) * NR
}

/// Panel `p` of [`PackedMatrix::pack_blocks`]: each of its rows' blocks from
/// `fill` (padding past row `n`), their lane groups in row order, then
/// transposed into the panel's lines by [`PanelPacker`] (the AVX-512
/// register transpose where the CPU has it); the scales are copied as they
/// pass. `run` gives the first failing row and its error, if any. A
/// load-loop task, so that the copies are compiled for the dispatched
/// clone's ISA.
struct PackPanel<'a, B, F> {
    p: usize,
    panel: &'a mut [u8],
    n: usize,
    nb: usize,
    so: usize,
    fill: &'a F,
    packer: PanelPacker,
    /// Scratch reused from panel to panel: one row's blocks and the
    /// panel's lane groups in row order.
    scratch: &'a mut (Vec<B>, Vec<[u8; 4]>),
}

impl<B: PackedBlock, E, F: Fn(usize, &mut [B]) -> Result<(), E>> crate::load::Task
    for PackPanel<'_, B, F>
{
    type Output = Option<(usize, E)>;
    #[inline(always)]
    fn run(self) -> Option<(usize, E)> {
        let PackPanel {
            p,
            panel,
            n,
            nb,
            so,
            fill,
            packer,
            scratch: (blocks, groups),
        } = self;
        let scale_bytes = scale_bytes::<B>();
        // Each row's lane groups in order (padding rows past `n`), then the
        // 16 rows transposed into the panel's lines ([`PanelPacker`]):
        // writing each row's 4-byte groups straight into the panel
        // scattered them over lines 64 bytes apart.
        let per_row = nb * B::GROUPS;
        // Every group is written below; each panel's blocks start as padding.
        groups.resize(NR * per_row, [0; 4]);
        blocks.clear();
        blocks.resize(nb, B::padding());
        let (codes, scales) = panel.split_at_mut(so);
        for (lane, row) in groups.chunks_exact_mut(per_row).enumerate() {
            let r = p * NR + lane;
            if r < n {
                if let Err(e) = fill(r, blocks) {
                    return Some((r, e));
                }
            } else if r == n {
                blocks.fill(B::padding());
            }
            for (blk, (g, sb)) in blocks.iter().zip(
                row.chunks_exact_mut(B::GROUPS)
                    .zip(scales.chunks_exact_mut(scale_bytes)),
            ) {
                blk.packed_groups(|c, v| g[c] = v);
                for (s, d) in blk.scales().iter().take(B::SCALES).enumerate() {
                    let o = (s * NR + lane) * 2;
                    sb[o..o + 2].copy_from_slice(&d.to_le_bytes());
                }
                let small = &mut sb[B::SCALES * NR * 2..];
                for g in 0..B::SCALE_GROUPS {
                    for (i, &v) in blk.packed_group(B::GROUPS + g).iter().enumerate() {
                        small[(4 * g + i) * NR + lane] = v;
                    }
                }
            }
        }
        packer.panel(groups, per_row, bytemuck::cast_slice_mut(codes), None);
        None
    }
}

#[repr(C, align(64))]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Line([u8; 64]);

/// A weight matrix `[n, k]` (row-major in meaning) stored as panels of 16 rows.
#[derive(Clone)]
pub struct PackedMatrix {
    format: WeightFormat,
    n: usize,
    k: usize,
    panel_stride: usize,
    scales_offset: usize,
    data: crate::mmap::PageBuf<Line>,
}

impl core::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PackedMatrix")
            .field("format", &self.format)
            .field("n", &self.n)
            .field("k", &self.k)
            .field("bytes", &self.storage_bytes())
            .finish()
    }
}

fn round64(x: usize) -> usize {
    x.div_ceil(64) * 64
}

impl PackedMatrix {
    fn alloc(format: WeightFormat, n: usize, k: usize) -> Self {
        Self::alloc_with(format, n, k, true)
    }

    /// [`Self::alloc`]; `touch: false` leaves a freshly mapped buffer's
    /// pages to the packing ([`crate::mmap::PageBuf::zeroed_lazy`]).
    fn alloc_with(format: WeightFormat, n: usize, k: usize, touch: bool) -> Self {
        assert!(n > 0 && k > 0, "PackedMatrix: zero size");
        let (codes, scales) = match_format!(
            format,
            B => {
                let nb = k.div_ceil(B::VALUES);
                (nb * B::GROUPS * 64, nb * scale_bytes::<B>())
            },
            E => (k * NR * core::mem::size_of::<E>(), 0),
        );
        let panel_stride = round64(codes + scales);
        let panels = n.div_ceil(NR);
        let lines = panels
            .checked_mul(panel_stride)
            .expect("PackedMatrix: size overflow")
            / 64;
        PackedMatrix {
            format,
            n,
            k,
            panel_stride,
            scales_offset: codes,
            // Zeroed with no pass over fresh memory where the allocator
            // maps it afresh, large ones faulted in on every thread of
            // rayon's current pool (huge pages where the kernel gives them)
            // unless the packing faults them itself.
            data: if touch {
                crate::mmap::PageBuf::zeroed(lines)
            } else {
                crate::mmap::PageBuf::zeroed_lazy(lines)
            },
        }
    }

    /// Packs GGUF block rows produced by `fill(row, blocks_of_that_row)`.
    ///
    /// Panels are independent, so matrices of 256 KiB or more are packed in
    /// parallel on the current rayon pool (`pool.install` chooses it); each
    /// task holds one row of blocks at a time. When `fill` fails for some
    /// rows, the error of the lowest such row is returned, whatever the
    /// thread count.
    pub fn pack_blocks<B: PackedBlock, E: Send>(
        n: usize,
        k: usize,
        fill: impl Fn(usize, &mut [B]) -> Result<(), E> + Sync,
    ) -> Result<Self, E> {
        let mut m = Self::alloc(B::FORMAT, n, k);
        let (nb, so) = (m.format_blocks_per_row(), m.scales_offset);
        let packer = PanelPacker::new();
        // The per-block copies compiled into the dispatched clone.
        let pack_panel = |scratch: &mut _, (p, panel): (usize, &mut [u8])| {
            crate::load::run_dispatched(PackPanel {
                p,
                panel,
                n,
                nb,
                so,
                fill: &fill,
                packer,
                scratch,
            })
        };
        match m.first_failure(Default::default, pack_panel, |&(r, _)| r) {
            Some((_, e)) => Err(e),
            None => Ok(m),
        }
    }

    /// [`Self::pack_blocks`] for Q8_0.
    pub fn pack_q8_0<E: Send>(
        n: usize,
        k: usize,
        fill: impl Fn(usize, &mut [BlockQ8_0]) -> Result<(), E> + Sync,
    ) -> Result<Self, E> {
        Self::pack_blocks(n, k, fill)
    }

    /// [`Self::pack_blocks`] for Q4_0.
    pub fn pack_q4_0<E: Send>(
        n: usize,
        k: usize,
        fill: impl Fn(usize, &mut [BlockQ4_0]) -> Result<(), E> + Sync,
    ) -> Result<Self, E> {
        Self::pack_blocks(n, k, fill)
    }

    /// Packs float weights of a float format (`f16`, `bf16`, `f32`),
    /// `w.len() == n * k`, row-major (panels in parallel, as
    /// [`Self::pack_blocks`]).
    pub fn from_floats<E: FloatElem>(w: &[E], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "PackedMatrix: {} length", E::INFO.name);
        let mut m = Self::alloc(E::FORMAT, n, k);
        m.pack_floats(bytemuck::cast_slice::<E, u8>(w), true, false);
        m
    }

    /// Packs f32 weights (`w.len() == n * k`, row-major) narrowed to the
    /// float format `E` as ggml converts them ([`FloatElem::from_f32_le`]),
    /// sixteen rows at a time through a buffer the size of one panel: no
    /// narrowed copy of the whole matrix is made (nor its pages touched).
    /// Errors with the index of the first value whose narrowed value is
    /// NaN or infinite (a finite f32 beyond the format's range, or a
    /// non-finite one), whatever the thread count.
    pub fn from_f32_narrowed<E: FloatElem>(w: &[f32], n: usize, k: usize) -> Result<Self, usize> {
        assert_eq!(w.len(), n * k, "PackedMatrix: f32 weights length");
        let mut m = Self::alloc(E::FORMAT, n, k);
        let packer = PanelPacker::new();
        let zero = E::from_f32_le(0.0);
        let pack_panel = |buf: &mut Vec<E>, (p, panel): (usize, &mut [u8])| -> Option<usize> {
            buf.resize(NR * k, zero);
            let rows = (n - p * NR).min(NR);
            for (lane, out) in buf.chunks_exact_mut(k).enumerate() {
                match w.get((p * NR + lane) * k..(p * NR + lane + 1) * k) {
                    Some(row) => crate::load::floats_from_f32(row, out),
                    None => out.fill(zero),
                }
            }
            let out = &mut panel[..NR * k * core::mem::size_of::<E>()];
            let flagged = match core::mem::size_of::<E>() {
                2 => packer.panel::<2>(
                    bytemuck::cast_slice(buf),
                    k,
                    bytemuck::cast_slice_mut(out),
                    Some(E::FORMAT),
                ),
                _ => packer.panel::<4>(
                    bytemuck::cast_slice(buf),
                    k,
                    bytemuck::cast_slice_mut(out),
                    Some(E::FORMAT),
                ),
            };
            if !flagged {
                return None;
            }
            (buf.chunks_exact(k).take(rows).enumerate()).find_map(|(lane, row)| {
                crate::load::first_non_finite(row).map(|c| (p * NR + lane) * k + c)
            })
        };
        match m.first_failure(Vec::new, pack_panel, |&i| i) {
            Some(i) => Err(i),
            None => Ok(m),
        }
    }

    /// Packs f16 weights, `w.len() == n * k`, row-major.
    pub fn from_f16(w: &[f16], n: usize, k: usize) -> Self {
        Self::from_floats(w, n, k)
    }

    /// Packs bf16 weights, `w.len() == n * k`, row-major.
    pub fn from_bf16(w: &[bf16], n: usize, k: usize) -> Self {
        Self::from_floats(w, n, k)
    }

    /// Packs f32 weights, `w.len() == n * k`, row-major.
    pub fn from_f32(w: &[f32], n: usize, k: usize) -> Self {
        Self::from_floats(w, n, k)
    }

    /// Packs the little-endian bytes of a float format's weights (a GGUF
    /// F16 / BF16 / F32 tensor, `n * k` values, any alignment) without
    /// decoding them. Panics for a block format or a length mismatch.
    pub fn from_float_le_bytes(format: WeightFormat, bytes: &[u8], n: usize, k: usize) -> Self {
        Self::float_le_bytes(format, bytes, n, k, false).0
    }

    /// [`Self::from_float_le_bytes`], or the index of the first NaN or
    /// infinity of `bytes` if there is one. The values are checked as they
    /// are packed (on AVX-512 CPUs in the packing's registers, so the input
    /// is read once) and located by a scan only when one is found.
    pub fn from_float_le_bytes_checked(
        format: WeightFormat,
        bytes: &[u8],
        n: usize,
        k: usize,
    ) -> Result<Self, usize> {
        let (m, flagged) = Self::float_le_bytes(format, bytes, n, k, true);
        if flagged {
            if let Some(i) = crate::load::first_non_finite_le(format, bytes) {
                return Err(i);
            }
        }
        Ok(m)
    }

    /// The packed matrix and, with `check`, whether a value may be
    /// non-finite.
    fn float_le_bytes(
        format: WeightFormat,
        bytes: &[u8],
        n: usize,
        k: usize,
        check: bool,
    ) -> (Self, bool) {
        assert!(
            !format.is_block_quantized(),
            "PackedMatrix::from_float_le_bytes: {format} is a block format"
        );
        assert_eq!(
            bytes.len(),
            n * k * format.bytes_per_block(),
            "PackedMatrix: {format} bytes length"
        );
        // 16-bit values are packed by stores that follow each other through
        // the panels, faster on pages they fault themselves (see
        // `PageBuf::zeroed_lazy`).
        let mut m = Self::alloc_with(format, n, k, format.bytes_per_block() != 2);
        let flagged = m.pack_floats(bytes, false, check);
        (m, flagged)
    }

    /// Packs the little-endian bytes of f16 weights (`n * k * 2` bytes).
    pub fn from_f16_le_bytes(bytes: &[u8], n: usize, k: usize) -> Self {
        Self::from_float_le_bytes(WeightFormat::F16, bytes, n, k)
    }

    /// Packs the little-endian bytes of f32 weights (`n * k * 4` bytes).
    pub fn from_f32_le_bytes(bytes: &[u8], n: usize, k: usize) -> Self {
        Self::from_float_le_bytes(WeightFormat::F32, bytes, n, k)
    }

    /// Writes row-major values (`bytes`: `n * k` values of this float
    /// format's size) into the panels (k-step `kk` of a panel holds its 16
    /// rows' values), little-endian: `native` says the source values are in
    /// native byte order (swapped on big-endian targets) rather than
    /// little-endian already. With `check`, returns whether some value may
    /// be non-finite (else `false`).
    fn pack_floats(&mut self, bytes: &[u8], native: bool, check: bool) -> bool {
        let swap = native && cfg!(target_endian = "big");
        let check = check.then_some(self.format);
        match self.format.bytes_per_block() {
            2 => self.pack_units::<2>(bytes, swap, check),
            _ => self.pack_units::<4>(bytes, swap, check),
        }
    }

    fn pack_units<const S: usize>(
        &mut self,
        bytes: &[u8],
        swap: bool,
        check: Option<WeightFormat>,
    ) -> bool
    where
        [u8; S]: bytemuck::Pod,
    {
        let le = |mut b: [u8; S]| {
            if swap {
                b.reverse();
            }
            b
        };
        let (n, k) = (self.n, self.k);
        let w = bytemuck::cast_slice::<u8, [u8; S]>(bytes);
        let stride = self.panel_stride / S;
        let parallel = self.storage_bytes() >= PARALLEL_BYTES;
        let packer = PanelPacker::new();
        let pack_panel = |(p, panel): (usize, &mut [[u8; S]])| {
            let rows = &w[p * NR * k..((p + 1) * NR).min(n) * k];
            if rows.len() == NR * k && !swap {
                return packer.panel(rows, k, &mut panel[..k * NR], check);
            }
            if rows.len() == NR * k {
                // A whole panel: each k-step's 16 values are written together.
                let src: [&[[u8; S]]; NR] = core::array::from_fn(|l| &rows[l * k..(l + 1) * k]);
                for (kk, step) in panel[..k * NR].chunks_exact_mut(NR).enumerate() {
                    for (dst, row) in step.iter_mut().zip(&src) {
                        *dst = le(row[kk]);
                    }
                }
            } else {
                for (lane, row) in rows.chunks_exact(k).enumerate() {
                    for (dst, &v) in panel[lane..].iter_mut().step_by(NR).zip(row) {
                        *dst = le(v);
                    }
                }
            }
            // (Checked packing reads little-endian bytes: never swapped.)
            check.is_some_and(|f| {
                crate::load::first_non_finite_le(f, bytemuck::cast_slice(rows)).is_some()
            })
        };
        let values = bytemuck::cast_slice_mut::<u8, [u8; S]>(self.bytes_mut());
        if parallel {
            values
                .par_chunks_mut(stride)
                .enumerate()
                .map(pack_panel)
                .reduce(|| false, |a, b| a | b)
        } else {
            values
                .chunks_mut(stride)
                .enumerate()
                .map(pack_panel)
                .fold(false, |a, b| a | b)
        }
    }

    /// Runs `pack(scratch, (p, panel))` on every panel `p` (on rayon's
    /// current pool when the matrix has [`PARALLEL_BYTES`] or more, one
    /// scratch from `init` per rayon job) and returns the failure with the
    /// lowest `key`, as a serial pass in panel order would; `None` when
    /// every panel packed.
    fn first_failure<S, R: Send, K: Ord + Send>(
        &mut self,
        init: impl Fn() -> S + Sync + Send,
        pack: impl Fn(&mut S, (usize, &mut [u8])) -> Option<R> + Sync + Send,
        key: impl Fn(&R) -> K + Sync + Send,
    ) -> Option<R> {
        let stride = self.panel_stride;
        if self.storage_bytes() >= PARALLEL_BYTES {
            self.bytes_mut()
                .par_chunks_mut(stride)
                .enumerate()
                .map_init(init, pack)
                .flatten()
                .min_by_key(key)
        } else {
            let mut scratch = init();
            self.bytes_mut()
                .chunks_mut(stride)
                .enumerate()
                .find_map(|x| pack(&mut scratch, x))
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.data[..])
    }

    /// All packed bytes (64-byte aligned).
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.data[..])
    }

    /// The bytes of panel `p` (codes then scales), `panel_stride()` long.
    #[inline]
    pub fn panel(&self, p: usize) -> &[u8] {
        &self.bytes()[p * self.panel_stride..(p + 1) * self.panel_stride]
    }

    /// Storage format.
    pub fn format(&self) -> WeightFormat {
        self.format
    }
    /// Output rows.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Input columns (logical, unpadded).
    pub fn k(&self) -> usize {
        self.k
    }
    /// Activation blocks per input row (`ceil(k / 32)`): the 32-blocks (or
    /// 32-value sub-blocks of the k-quants) the kernels run over.
    pub fn blocks_per_row(&self) -> usize {
        self.k.div_ceil(QK)
    }
    /// Blocks of the format per row (`ceil(k / block size)`): GGUF blocks,
    /// or values for the float formats.
    pub fn format_blocks_per_row(&self) -> usize {
        self.k.div_ceil(self.format.block_size())
    }
    /// Number of 16-row panels.
    pub fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }
    /// Bytes from one panel to the next.
    pub fn panel_stride(&self) -> usize {
        self.panel_stride
    }
    /// Offset of the scales region inside a panel.
    pub fn scales_offset(&self) -> usize {
        self.scales_offset
    }
    /// Bytes actually held, padding included.
    pub fn storage_bytes(&self) -> usize {
        self.data.len() * 64
    }

    /// The stored block `b` of `row`, as GGUF has it; panics if `B` is not
    /// this matrix's format.
    #[inline]
    pub fn block<B: PackedBlock>(&self, row: usize, b: usize) -> B {
        assert_eq!(self.format, B::FORMAT, "PackedMatrix: wrong block type");
        panel_block(self.panel(row / NR), self.scales_offset, b, row % NR)
    }

    /// The f16 scale `d` of (row, block); block formats only.
    #[inline]
    pub fn scale(&self, row: usize, b: usize) -> f16 {
        match_format!(
            self.format,
            B => self.block::<B>(row, b).scales()[0],
            E => panic!("scale() on a {} matrix", E::INFO.name),
        )
    }

    /// Code of element `j` (0..block size) of block `b` of `row` (block formats):
    /// signed (`stored - offset`) for formats with an offset, the stored
    /// unsigned code for formats with a minimum.
    #[inline]
    pub fn code(&self, row: usize, b: usize, j: usize) -> i32 {
        match_format!(
            self.format,
            B => self.block::<B>(row, b).ucode(j) as i32 - B::OFFSET,
            E => panic!("code() on a {} matrix", E::INFO.name),
        )
    }

    /// Weight (row, kk) of a float-format matrix, as f32 (exact).
    #[inline]
    pub fn float_weight(&self, row: usize, kk: usize) -> f32 {
        match_format!(
            self.format,
            B => panic!("float_weight() on a {} matrix", B::INFO.name),
            E => {
                let s = core::mem::size_of::<E>();
                let o = (row / NR) * self.panel_stride + (kk * NR + row % NR) * s;
                bytemuck::pod_read_unaligned::<E>(&self.bytes()[o..o + s]).le_to_f32()
            },
        )
    }

    /// The GGUF blocks of `row` (exactly the bytes packed); panics if `B` is
    /// not this matrix's format or `out` is not one row of blocks.
    pub fn row_blocks<B: PackedBlock>(&self, row: usize, out: &mut [B]) {
        assert_eq!(self.format, B::FORMAT, "row_blocks: wrong block type");
        assert_eq!(out.len(), self.format_blocks_per_row());
        for (b, blk) in out.iter_mut().enumerate() {
            *blk = self.block(row, b);
        }
    }

    /// The GGUF Q8_0 blocks of `row`.
    pub fn row_q8_0(&self, row: usize, out: &mut [BlockQ8_0]) {
        self.row_blocks(row, out)
    }

    /// The GGUF Q4_0 blocks of `row`.
    pub fn row_q4_0(&self, row: usize, out: &mut [BlockQ4_0]) {
        self.row_blocks(row, out)
    }

    /// Appends the GGUF bytes of `row` (blocks, or little-endian values).
    pub fn extend_row_bytes(&self, row: usize, out: &mut Vec<u8>) {
        assert!(row < self.n);
        match_format!(
            self.format,
            B => {
                for b in 0..self.format_blocks_per_row() {
                    out.extend_from_slice(bytemuck::bytes_of(&self.block::<B>(row, b)));
                }
            },
            E => {
                let s = core::mem::size_of::<E>();
                let panel = self.panel(row / NR);
                for kk in 0..self.k {
                    let o = (kk * NR + row % NR) * s;
                    out.extend_from_slice(&panel[o..o + s]);
                }
            },
        )
    }

    /// Dequantizes `row` into `out` (`k` values), as llama.cpp dequantizes.
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        assert!(row < self.n);
        assert_eq!(out.len(), self.k);
        match_format!(
            self.format,
            B => {
                let mut buf = [0.0f32; crate::formats::QK_K];
                let buf = &mut buf[..B::VALUES];
                for (b, chunk) in out.chunks_mut(B::VALUES).enumerate() {
                    self.block::<B>(row, b).dequantize(buf);
                    chunk.copy_from_slice(&buf[..chunk.len()]);
                }
            },
            E => {
                for (kk, y) in out.iter_mut().enumerate() {
                    *y = self.float_weight(row, kk);
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::*;

    fn wave(n: usize, k: usize) -> Vec<f32> {
        (0..n * k)
            .map(|i| ((i * 2654435761usize) % 1000) as f32 / 100.0 - 5.0)
            .collect()
    }

    #[test]
    fn q8_round_trips_gguf_blocks() {
        let (n, k) = (21, 64);
        let w = wave(n, k);
        let mut blocks = vec![BlockQ8_0::zeroed(); n * 2];
        quantize_row_q8_0(&w, &mut blocks);
        blocks[3].qs[5] = -128; // extreme code survives the XOR
        let m = PackedMatrix::pack_q8_0::<()>(n, k, |r, out| {
            out.copy_from_slice(&blocks[r * 2..r * 2 + 2]);
            Ok(())
        })
        .unwrap();
        let mut row = vec![BlockQ8_0::zeroed(); 2];
        for r in 0..n {
            m.row_q8_0(r, &mut row);
            assert_eq!(&row[..], &blocks[r * 2..r * 2 + 2]);
        }
        assert_eq!(m.panels(), 2);
        assert_eq!(m.panel_stride() % 64, 0);
        // padding rows have code 0 and scale 0
        assert_eq!(m.code(31, 1, 7), 0);
        assert_eq!(m.scale(31, 1).to_bits(), 0);
    }

    #[test]
    fn q4_round_trips_gguf_blocks() {
        let (n, k) = (17, 96);
        let w = wave(n, k);
        let mut blocks = vec![BlockQ4_0::zeroed(); n * 3];
        quantize_row_q4_0(&w, &mut blocks);
        let m = PackedMatrix::pack_q4_0::<()>(n, k, |r, out| {
            out.copy_from_slice(&blocks[r * 3..r * 3 + 3]);
            Ok(())
        })
        .unwrap();
        let mut row = vec![BlockQ4_0::zeroed(); 3];
        let mut deq = vec![0.0; k];
        let mut want = vec![0.0; k];
        for r in 0..n {
            m.row_q4_0(r, &mut row);
            assert_eq!(&row[..], &blocks[r * 3..r * 3 + 3]);
            m.dequantize_row(r, &mut deq);
            dequantize_row_q4_0(&blocks[r * 3..r * 3 + 3], &mut want);
            assert_eq!(deq, want);
        }
        assert_eq!(m.code(20, 2, 31), 0);
    }

    #[test]
    fn float_layouts_round_trip() {
        let (n, k) = (18, 5);
        let w = wave(n, k);
        let m = PackedMatrix::from_f32(&w, n, k);
        let h: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let mh = PackedMatrix::from_f16(&h, n, k);
        let mut out = vec![0.0; k];
        for r in 0..n {
            m.dequantize_row(r, &mut out);
            assert_eq!(&out[..], &w[r * k..(r + 1) * k]);
            mh.dequantize_row(r, &mut out);
            for (o, hv) in out.iter().zip(&h[r * k..]) {
                assert_eq!(*o, hv.to_f32());
            }
        }
    }

    #[test]
    fn float_packing_from_values_and_le_bytes_agree() {
        // Whole panels (the k-step-major path) and a partial one (row by row);
        // the last shape is large enough to be packed in parallel.
        for (n, k) in [(32, 7), (37, 130), (5, 64), (250, 1100)] {
            assert_eq!((n * k * 2 >= PARALLEL_BYTES), n == 250);
            let w = wave(n, k);
            let h: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
            let hb: Vec<u8> = h.iter().flat_map(|v| v.to_le_bytes()).collect();
            let wb: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
            let (mh, mw) = (
                PackedMatrix::from_f16(&h, n, k),
                PackedMatrix::from_f32(&w, n, k),
            );
            assert_eq!(
                PackedMatrix::from_f16_le_bytes(&hb, n, k).bytes(),
                mh.bytes()
            );
            assert_eq!(
                PackedMatrix::from_f32_le_bytes(&wb, n, k).bytes(),
                mw.bytes()
            );
            for r in 0..n {
                for kk in 0..k {
                    assert_eq!(mw.float_weight(r, kk), w[r * k + kk]);
                    assert_eq!(mh.float_weight(r, kk), h[r * k + kk].to_f32());
                }
            }
        }
    }

    /// Packing narrowed f32 rows gives the bytes of packing the narrowed
    /// values (whole and partial panels, tails past the AVX-512 tiles, the
    /// parallel path), and the first value that narrows to NaN / Inf is the
    /// error, on 1 and 4 threads.
    #[test]
    fn narrowed_packing_matches_and_reports_the_first_overflow() {
        fn case<E: FloatElem>(n: usize, k: usize, big: f32) {
            let w = wave(n, k);
            let narrowed: Vec<E> = w.iter().map(|&v| E::from_f32_le(v)).collect();
            let want = PackedMatrix::from_floats(&narrowed, n, k);
            let got = PackedMatrix::from_f32_narrowed::<E>(&w, n, k).unwrap();
            assert_eq!(got.bytes(), want.bytes(), "{} {n}x{k}", E::INFO.name);
            let pools = [1, 4].map(|t| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .unwrap()
            });
            let last = n * k - 1;
            for bad in [
                vec![0],
                vec![last],
                vec![last, k + 3],
                vec![(n / 2) * k + k / 2, n * k / 3],
            ] {
                let bad: Vec<usize> = bad.iter().map(|&i| i % (n * k)).collect();
                let mut x = w.clone();
                for &i in &bad {
                    x[i] = big;
                }
                for pool in &pools {
                    let r = pool.install(|| PackedMatrix::from_f32_narrowed::<E>(&x, n, k));
                    assert_eq!(
                        r.unwrap_err(),
                        *bad.iter().min().unwrap(),
                        "{} {bad:?}",
                        E::INFO.name
                    );
                }
            }
        }
        for (n, k) in [(1, 1), (16, 32), (37, 130), (250, 1100)] {
            case::<f16>(n, k, 7e4);
            case::<half::bf16>(n, k, f32::MAX);
            case::<f32>(n, k, f32::NAN);
        }
        const { assert!(250 * 1100 * 2 >= PARALLEL_BYTES) };
    }

    #[test]
    fn parallel_packing_reports_the_lowest_failing_row() {
        let (n, k) = (4096, 64);
        // Large enough for the parallel path (checked), so panels of later
        // rows may well fail first.
        assert!(n * 2 * 34 >= PARALLEL_BYTES);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        for bad in [[3000, 1337, 4000], [4095, 4094, 17], [16, 2500, 33]] {
            let res = pool.install(|| {
                PackedMatrix::pack_q8_0(n, k, |r, _| if bad.contains(&r) { Err(r) } else { Ok(()) })
            });
            assert_eq!(res.unwrap_err(), *bad.iter().min().unwrap());
        }
    }

    #[test]
    fn storage_is_gguf_size_plus_row_padding() {
        let m = PackedMatrix::pack_q4_0::<()>(64, 4096, |_, _| Ok(())).unwrap();
        assert_eq!(m.storage_bytes(), 64 * 128 * 18);
        let m = PackedMatrix::pack_q8_0::<()>(64, 4096, |_, _| Ok(())).unwrap();
        assert_eq!(m.storage_bytes(), 64 * 128 * 34);
    }

    use bytemuck::Zeroable;
}
