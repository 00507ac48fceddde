//! The packed weight layout shared by every ISA.
//!
//! Weights are stored once, as panels of [`NR`] = 16 output rows. Every kernel
//! (scalar, AVX2, AVX-512, NEON) reads this one layout, so a layer can be run by
//! any ISA and the tests can compare them on the same bytes.
//!
//! Per panel (each panel starts on a 64-byte boundary):
//!
//! | format | codes region                                        | scales region |
//! |--------|-----------------------------------------------------|---------------|
//! | Q8_0   | `nb` x 8 chunks x 64 B: chunk `c`, lane `r` holds `qs[4c..4c+4]` of row `r`, each XOR 0x80 (so `u8 = q + 128`) | `nb` x 16 f16 |
//! | Q4_0   | `nb` x 4 chunks x 64 B: chunk `c`, lane `r` holds GGUF bytes `qs[4c..4c+4]` of row `r` (low nibble: element `4c+i`, high: `16+4c+i`) | `nb` x 16 f16 |
//! | F16    | `k` x 16 f16 (one k-step: the 16 rows' values)     | none          |
//! | F32    | `k` x 16 f32                                        | none          |
//!
//! A "lane" is 4 bytes: the i32 lane of `vpdpbusd`/`sdot` that sums 4 products of
//! one row. Codes are unsigned (Q8: `q + 128`, Q4: `q + 8`); kernels undo the
//! offset exactly with the activation block sums. Rows past `n` in the last
//! panel are zero (scale 0, code 0). The packed bytes have exactly the size of
//! the GGUF blocks (plus that row padding): no second copy is kept.

use crate::formats::{BlockQ4_0, BlockQ8_0, QK};
use half::f16;
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

/// A GGUF block type stored in the packed layout: its codes go to the panel
/// as `GROUPS` 4-byte lane groups (group `c` of a row in chunk `c`).
pub trait PackedBlock: bytemuck::Pod + Send + Sync {
    /// The matrix format holding these blocks.
    const FORMAT: WeightFormat;
    /// 4-byte lane groups per block (8 for Q8_0, 4 for Q4_0).
    const GROUPS: usize;
    /// Stored byte of a zero code (padding rows).
    const ZERO_CODE: u8;
    /// The block scale.
    fn scale(&self) -> f16;
    /// Stored bytes of lane group `c`.
    fn packed_group(&self, c: usize) -> [u8; 4];
    /// The block back from its scale and stored lane groups.
    fn from_packed(d: f16, group: impl Fn(usize) -> [u8; 4]) -> Self;
}

impl PackedBlock for BlockQ8_0 {
    const FORMAT: WeightFormat = WeightFormat::Q8_0;
    const GROUPS: usize = 8;
    const ZERO_CODE: u8 = 0x80;
    #[inline]
    fn scale(&self) -> f16 {
        self.d
    }
    /// Codes `4c..4c+4` as `q + 128`.
    #[inline]
    fn packed_group(&self, c: usize) -> [u8; 4] {
        core::array::from_fn(|i| self.qs[4 * c + i] as u8 ^ 0x80)
    }
    fn from_packed(d: f16, group: impl Fn(usize) -> [u8; 4]) -> Self {
        BlockQ8_0 {
            d,
            qs: core::array::from_fn(|j| (group(j / 4)[j % 4] ^ 0x80) as i8),
        }
    }
}

impl PackedBlock for BlockQ4_0 {
    const FORMAT: WeightFormat = WeightFormat::Q4_0;
    const GROUPS: usize = 4;
    const ZERO_CODE: u8 = 0x88;
    #[inline]
    fn scale(&self) -> f16 {
        self.d
    }
    /// GGUF bytes `4c..4c+4` as they are (elements `4c+i` and `16+4c+i`).
    #[inline]
    fn packed_group(&self, c: usize) -> [u8; 4] {
        self.qs[4 * c..4 * c + 4].try_into().unwrap()
    }
    fn from_packed(d: f16, group: impl Fn(usize) -> [u8; 4]) -> Self {
        BlockQ4_0 {
            d,
            qs: core::array::from_fn(|j| group(j / 4)[j % 4]),
        }
    }
}

/// Storage format of a packed matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    /// GGUF Q8_0 blocks.
    Q8_0,
    /// GGUF Q4_0 blocks.
    Q4_0,
    /// IEEE half precision.
    F16,
    /// IEEE single precision.
    F32,
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
    data: Vec<Line>,
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
        assert!(n > 0 && k > 0, "PackedMatrix: zero size");
        let nb = k.div_ceil(QK);
        let (codes, scales) = match format {
            WeightFormat::Q8_0 => (nb * Q8_CODE_BYTES, nb * NR * 2),
            WeightFormat::Q4_0 => (nb * Q4_CODE_BYTES, nb * NR * 2),
            WeightFormat::F16 => (k * NR * 2, 0),
            WeightFormat::F32 => (k * NR * 4, 0),
        };
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
            data: vec![Line([0; 64]); lines],
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
        let (nb, so, stride) = (m.blocks_per_row(), m.scales_offset, m.panel_stride);
        let code_bytes = B::GROUPS * 64;
        let parallel = m.storage_bytes() >= PARALLEL_BYTES;
        let pack_panel = |(p, panel): (usize, &mut [u8])| {
            let mut blocks = vec![B::zeroed(); nb];
            for lane in 0..NR.min(n - p * NR) {
                let r = p * NR + lane;
                if let Err(e) = fill(r, &mut blocks) {
                    return Some((r, e));
                }
                let (codes, scales) = panel.split_at_mut(so);
                for (blk, (cb, sb)) in blocks.iter().zip(
                    codes
                        .chunks_exact_mut(code_bytes)
                        .zip(scales.chunks_exact_mut(NR * 2)),
                ) {
                    for (c, line) in cb.chunks_exact_mut(64).enumerate() {
                        line[lane * 4..lane * 4 + 4].copy_from_slice(&blk.packed_group(c));
                    }
                    sb[lane * 2..lane * 2 + 2].copy_from_slice(&blk.scale().to_le_bytes());
                }
            }
            None
        };
        let failed = if parallel {
            m.bytes_mut()
                .par_chunks_mut(stride)
                .enumerate()
                .filter_map(pack_panel)
                .min_by_key(|&(r, _)| r)
        } else {
            m.bytes_mut()
                .chunks_mut(stride)
                .enumerate()
                .find_map(pack_panel)
        };
        if let Some((_, e)) = failed {
            return Err(e);
        }
        m.fill_padding_codes(B::ZERO_CODE);
        Ok(m)
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

    /// Packs f16 weights, `w.len() == n * k`, row-major (panels in parallel,
    /// as [`Self::pack_blocks`]).
    pub fn from_f16(w: &[f16], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "PackedMatrix::from_f16: length");
        let mut m = Self::alloc(WeightFormat::F16, n, k);
        m.pack_floats(w, |v| f16::from_bits(v.to_bits().to_le()));
        m
    }

    /// Packs f32 weights, `w.len() == n * k`, row-major (panels in parallel).
    pub fn from_f32(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "PackedMatrix::from_f32: length");
        let mut m = Self::alloc(WeightFormat::F32, n, k);
        m.pack_floats(w, |v| f32::from_bits(v.to_bits().to_le()));
        m
    }

    /// Packs the little-endian bytes of f16 weights (a GGUF F16 tensor,
    /// `n * k * 2` bytes, any alignment) without decoding them.
    pub fn from_f16_le_bytes(bytes: &[u8], n: usize, k: usize) -> Self {
        Self::from_le_units::<2>(WeightFormat::F16, bytes, n, k)
    }

    /// Packs the little-endian bytes of f32 weights (`n * k * 4` bytes).
    pub fn from_f32_le_bytes(bytes: &[u8], n: usize, k: usize) -> Self {
        Self::from_le_units::<4>(WeightFormat::F32, bytes, n, k)
    }

    /// Packs `n * k` values of `S` little-endian bytes, moved as they are.
    fn from_le_units<const S: usize>(format: WeightFormat, bytes: &[u8], n: usize, k: usize) -> Self
    where
        [u8; S]: bytemuck::Pod,
    {
        assert_eq!(
            bytes.len(),
            n * k * S,
            "PackedMatrix: {format:?} bytes length"
        );
        let mut m = Self::alloc(format, n, k);
        m.pack_floats(bytemuck::cast_slice::<u8, [u8; S]>(bytes), |v| v);
        m
    }

    /// Writes row-major values into the panels (k-step `kk` of a panel holds
    /// its 16 rows' values); `le` gives the value whose native bytes are the
    /// little-endian bytes of its argument (the identity on little-endian
    /// targets).
    fn pack_floats<T: bytemuck::Pod + Send + Sync>(&mut self, w: &[T], le: impl Fn(T) -> T + Sync) {
        let (n, k) = (self.n, self.k);
        let stride = self.panel_stride / core::mem::size_of::<T>();
        let parallel = self.storage_bytes() >= PARALLEL_BYTES;
        let pack_panel = |(p, panel): (usize, &mut [T])| {
            let rows = &w[p * NR * k..((p + 1) * NR).min(n) * k];
            if rows.len() == NR * k {
                // A whole panel: each k-step's 16 values are written together.
                let src: [&[T]; NR] = core::array::from_fn(|l| &rows[l * k..(l + 1) * k]);
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
        };
        let values = bytemuck::cast_slice_mut::<u8, T>(self.bytes_mut());
        if parallel {
            values
                .par_chunks_mut(stride)
                .enumerate()
                .for_each(pack_panel);
        } else {
            values.chunks_mut(stride).enumerate().for_each(pack_panel);
        }
    }

    /// Padding rows get code 0 (stored as the unsigned offset).
    fn fill_padding_codes(&mut self, zero_code: u8) {
        let (n, nb, stride) = (self.n, self.blocks_per_row(), self.panel_stride);
        let chunk_bytes = match self.format {
            WeightFormat::Q8_0 => Q8_CODE_BYTES,
            _ => Q4_CODE_BYTES,
        };
        let last = self.panels() - 1;
        let bytes = self.bytes_mut();
        for lane in (n - last * NR)..NR {
            for b in 0..nb {
                for c in 0..chunk_bytes / 64 {
                    let o = last * stride + b * chunk_bytes + c * 64 + lane * 4;
                    bytes[o..o + 4].fill(zero_code);
                }
            }
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.data)
    }

    /// All packed bytes (64-byte aligned).
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.data)
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
    /// 32-blocks per row (`ceil(k / 32)`).
    pub fn blocks_per_row(&self) -> usize {
        self.k.div_ceil(QK)
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

    /// The f16 scale of (row, block); Q8_0 / Q4_0 only.
    #[inline]
    pub fn scale(&self, row: usize, b: usize) -> f16 {
        let o = (row / NR) * self.panel_stride + self.scales_offset + (b * NR + row % NR) * 2;
        let bytes = self.bytes();
        f16::from_le_bytes([bytes[o], bytes[o + 1]])
    }

    /// Signed code of element `j` (0..32) of block `b` of `row`; Q8_0 / Q4_0 only.
    #[inline]
    pub fn code(&self, row: usize, b: usize, j: usize) -> i32 {
        let base = (row / NR) * self.panel_stride + (row % NR) * 4;
        let bytes = self.bytes();
        match self.format {
            WeightFormat::Q8_0 => {
                let o = base + b * Q8_CODE_BYTES + (j / 4) * 64 + j % 4;
                (bytes[o] ^ 0x80) as i8 as i32
            }
            WeightFormat::Q4_0 => {
                let jj = j % 16;
                let o = base + b * Q4_CODE_BYTES + (jj / 4) * 64 + jj % 4;
                let nib = if j < 16 {
                    bytes[o] & 0x0F
                } else {
                    bytes[o] >> 4
                };
                nib as i32 - 8
            }
            _ => panic!("code() on a float matrix"),
        }
    }

    /// Weight (row, kk) of an F16 / F32 matrix, as f32 (exact).
    #[inline]
    pub fn float_weight(&self, row: usize, kk: usize) -> f32 {
        let bytes = self.bytes();
        let base = (row / NR) * self.panel_stride;
        match self.format {
            WeightFormat::F16 => {
                let o = base + (kk * NR + row % NR) * 2;
                f16::from_le_bytes([bytes[o], bytes[o + 1]]).to_f32()
            }
            WeightFormat::F32 => {
                let o = base + (kk * NR + row % NR) * 4;
                f32::from_le_bytes(bytes[o..o + 4].try_into().unwrap())
            }
            _ => panic!("float_weight() on a block matrix"),
        }
    }

    /// The GGUF blocks of `row` (exactly the bytes packed); panics if `B` is
    /// not this matrix's format or `out` is not one row of blocks.
    pub fn row_blocks<B: PackedBlock>(&self, row: usize, out: &mut [B]) {
        assert_eq!(self.format, B::FORMAT, "row_blocks: wrong block type");
        assert_eq!(out.len(), self.blocks_per_row());
        let base = (row / NR) * self.panel_stride + (row % NR) * 4;
        let bytes = self.bytes();
        for (b, blk) in out.iter_mut().enumerate() {
            let codes = base + b * B::GROUPS * 64;
            *blk = B::from_packed(self.scale(row, b), |c| {
                bytes[codes + c * 64..codes + c * 64 + 4]
                    .try_into()
                    .unwrap()
            });
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

    /// Dequantizes `row` into `out` (`k` values), as llama.cpp dequantizes.
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        assert!(row < self.n);
        assert_eq!(out.len(), self.k);
        match self.format {
            WeightFormat::Q8_0 | WeightFormat::Q4_0 => {
                for (kk, y) in out.iter_mut().enumerate() {
                    let (b, j) = (kk / QK, kk % QK);
                    *y = self.code(row, b, j) as f32 * self.scale(row, b).to_f32();
                }
            }
            WeightFormat::F16 | WeightFormat::F32 => {
                for (kk, y) in out.iter_mut().enumerate() {
                    *y = self.float_weight(row, kk);
                }
            }
        }
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
