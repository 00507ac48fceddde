//! Load-time loops: quantizing weights, dequantizing them, converting f16 /
//! bf16, scanning for NaN / Inf and dequantizing packed panels.
//!
//! These touch every weight once per load. They are plain Rust written so
//! that the compiler vectorizes them (the formats' `quantize_vectorized`,
//! `dequantize`, `to_f32_slice`, ...), compiled by `multiversion` once per
//! [`Level`] (AVX-512 F/BW/VL, AVX2 with FMA and F16C, baseline x86-64); the
//! first call picks the best clone the CPU runs and later calls reuse that
//! choice (one atomic load). Large inputs are split over the current rayon
//! pool. The widening of f16 / bf16 writes outputs of 8 MiB and more around
//! the caches: made in an L1 buffer, copied out with non-temporal stores
//! (`x86/stream.rs`), up to twice as fast here; the quantizers, the
//! narrowing and the dequantizers keep plain stores (compute-bound, or
//! measured no faster streamed). F16, BF16, F32, Q8_0 and k-quant panels are
//! turned back into rows on the AVX-512 level by `x86/panel_rows.rs` (each
//! column for 16 rows at once, then a register transpose): the compiler's
//! permutes of a fixed-size tile, or the gathering of each row's lanes,
//! took most of the time there; the other way, F16 / BF16 / F32 rows are
//! packed into panels by the same register transpose, which also checks
//! the values' exponents as they pass (so `from_gguf_bytes` reads its
//! input once), and so are the block formats' rows of 4-byte lane groups.
//! The quantizers check their input for NaN / Inf piece by piece as they
//! go ([`quantize_blocks_finite`]). Likewise the k-quant, Q4_0 and Q5_0
//! quantizers run explicit SIMD on the AVX2 and AVX-512 levels
//! (`x86::quantize_blocks`: per-lane selects and sequential searches the
//! compiler handles badly), with the reference's operations in its order.
//!
//! Rust never contracts or reassociates float operations, whatever the
//! target features, so every clone gives the bytes of the baseline build and
//! of the scalar reference in [`crate::formats`] (`PackedBlock::quantize`).
//! The `*_on` functions run a chosen clone, so that tests can compare each
//! level this CPU has.

use crate::formats::{FloatElem, PackedBlock, WeightFormat, QK_K};
use crate::match_format;
use crate::pack::{dequantize_panel_block, PackedMatrix, NR};
use core::fmt;
use rayon::prelude::*;

/// An ISA level the load-time loops are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// The build's own target (baseline x86-64: SSE2).
    Baseline,
    /// AVX2 with FMA, F16C, BMI1/2, LZCNT, POPCNT.
    Avx2,
    /// The AVX2 set plus Ice Lake's AVX-512 (F, BW, CD, DQ, VL, VNNI, IFMA,
    /// VBMI, VBMI2, BITALG, VPOPCNTDQ) with GFNI, VAES, VPCLMULQDQ.
    Avx512,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 3] = [Level::Baseline, Level::Avx2, Level::Avx512];

    /// Short name ("baseline", "avx2", "avx512").
    pub const fn name(self) -> &'static str {
        match self {
            Level::Baseline => "baseline",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    /// Whether this CPU runs the level's clones.
    pub fn available(self) -> bool {
        match self {
            Level::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            level => detected(level),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The level the dispatched functions run on here: the best available
    /// one, as `multiversion` chooses it.
    pub fn selected() -> Level {
        dispatched_level()
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A [`Level`] this CPU does not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unavailable(pub Level);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "this CPU does not run the {} load loops", self.0)
    }
}

impl std::error::Error for Unavailable {}

/// One loop, compiled into each clone by `run` (always inlined there).
pub(crate) trait Task {
    type Output;
    fn run(self) -> Self::Output;
}

/// Defines the dispatcher and the clones of each level from one list of
/// target strings (`multiversion`'s syntax), so they cannot drift apart.
///
/// The AVX-512 level names Ice Lake's whole AVX-512 set: `multiversion`
/// adds exactly that set to any target that names an AVX-512 feature (to
/// avoid older CPUs' AVX-512 frequency penalty), both to the clone's
/// features and to its run-time check, so [`Level::available`] checks the
/// same list.
macro_rules! clones {
    ($avx2:literal, $avx512:literal) => {
        #[multiversion::multiversion(targets($avx512, $avx2), dispatcher = "direct")]
        fn dispatch<T: Task>(task: T) -> T::Output {
            task.run()
        }

        /// The level whose clone `multiversion` runs here.
        #[multiversion::multiversion(targets($avx512, $avx2))]
        fn dispatched_level() -> Level {
            multiversion::target::match_target! {
                $avx512 => Level::Avx512,
                $avx2 => Level::Avx2,
                _ => Level::Baseline,
            }
        }

        #[multiversion::target($avx2)]
        #[inline(never)]
        fn run_avx2<T: Task>(task: T) -> T::Output {
            task.run()
        }

        #[multiversion::target($avx512)]
        #[inline(never)]
        fn run_avx512<T: Task>(task: T) -> T::Output {
            task.run()
        }

        #[cfg(target_arch = "x86_64")]
        fn detected(level: Level) -> bool {
            use std::arch::is_x86_feature_detected as has;
            let features = match level {
                Level::Baseline => return true,
                Level::Avx2 => $avx2,
                Level::Avx512 => $avx512,
            };
            features.split('+').skip(1).all(|f| match f {
                "avx" => has!("avx"),
                "avx2" => has!("avx2"),
                "fma" => has!("fma"),
                "f16c" => has!("f16c"),
                "bmi1" => has!("bmi1"),
                "bmi2" => has!("bmi2"),
                "lzcnt" => has!("lzcnt"),
                "popcnt" => has!("popcnt"),
                "avx512f" => has!("avx512f"),
                "avx512bw" => has!("avx512bw"),
                "avx512cd" => has!("avx512cd"),
                "avx512dq" => has!("avx512dq"),
                "avx512vl" => has!("avx512vl"),
                "avx512vnni" => has!("avx512vnni"),
                "avx512ifma" => has!("avx512ifma"),
                "avx512vbmi" => has!("avx512vbmi"),
                "avx512vbmi2" => has!("avx512vbmi2"),
                "avx512bitalg" => has!("avx512bitalg"),
                "avx512vpopcntdq" => has!("avx512vpopcntdq"),
                "gfni" => has!("gfni"),
                "vaes" => has!("vaes"),
                "vpclmulqdq" => has!("vpclmulqdq"),
                _ => false,
            })
        }
    };
}

clones!(
    "x86_64+avx+avx2+fma+f16c+bmi1+bmi2+lzcnt+popcnt",
    "x86_64+avx+avx2+fma+f16c+bmi1+bmi2+lzcnt+popcnt+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx512vnni+avx512ifma+avx512vbmi+avx512vbmi2+avx512bitalg+avx512vpopcntdq+gfni+vaes+vpclmulqdq"
);

#[inline(never)]
fn run_baseline<T: Task>(task: T) -> T::Output {
    task.run()
}

/// Where a loop runs: the dispatched clone, or that of a level the caller
/// checked is available.
#[derive(Clone, Copy)]
pub(crate) enum On {
    Dispatched,
    Level(Level),
}

impl On {
    pub(crate) fn checked(level: Level) -> Result<On, Unavailable> {
        if level.available() {
            Ok(On::Level(level))
        } else {
            Err(Unavailable(level))
        }
    }

    /// The level whose clone runs.
    fn level(self) -> Level {
        match self {
            On::Dispatched => Level::selected(),
            On::Level(level) => level,
        }
    }

    #[inline]
    pub(crate) fn run<T: Task>(self, task: T) -> T::Output {
        match self {
            On::Dispatched => dispatch(task),
            On::Level(Level::Baseline) => run_baseline(task),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `On::checked` made sure this CPU has the level's
            // features (`Level::available`).
            On::Level(Level::Avx2) => unsafe { run_avx2(task) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            On::Level(Level::Avx512) => unsafe { run_avx512(task) },
            #[cfg(not(target_arch = "x86_64"))]
            On::Level(l) => unreachable!("{l} is not available here"),
        }
    }
}

/// Runs `task` in the dispatched clone (for loops defined elsewhere in
/// the crate, such as the panel packing).
#[inline]
pub(crate) fn run_dispatched<T: Task>(task: T) -> T::Output {
    dispatch(task)
}

/// Inputs of at least this many values are split over the rayon pool in
/// pieces of [`PIECE`] values (a rayon job costs more than smaller ones).
const PARALLEL_VALUES: usize = 1 << 18;
const PIECE: usize = 1 << 15;

/// How a loop stores its output.
#[derive(Clone, Copy)]
enum Stores {
    /// Around the caches when the whole output is large ([`streams`]).
    BySize,
    /// Always around the caches (tests of the streamed form).
    #[cfg(test)]
    Streaming,
}

/// Runs `f` on matching pieces of `x` and `out` (`step_x` inputs per `step_out`
/// outputs), on the rayon pool for large inputs; `f`'s flag says whether to
/// write around the caches.
fn split<X: Sync, Y: Send>(
    x: &[X],
    out: &mut [Y],
    (step_x, step_out): (usize, usize),
    stores: Stores,
    f: impl Fn(&[X], &mut [Y], bool) + Sync,
) {
    let stream = match stores {
        Stores::BySize => streams::<Y>(out.len()),
        #[cfg(test)]
        Stores::Streaming => true,
    };
    if x.len() < PARALLEL_VALUES {
        return f(x, out, stream);
    }
    let units = PIECE / step_x.max(step_out);
    x.par_chunks(units * step_x)
        .zip(out.par_chunks_mut(units * step_out))
        .for_each(|(a, b)| f(a, b, stream));
}

/// Outputs of at least this many bytes are written around the caches, with
/// non-temporal stores. Measured on the 2-core Xeon VM: plain stores fill a
/// reused buffer of up to 32 MiB (held by its caches) at 19-44 GB/s, one of
/// 64 MiB at 7; non-temporal stores fill any size at about 22. Smaller
/// outputs keep plain stores, and stay in cache for whatever reads them next.
const STREAM_BYTES: usize = 8 << 20;

/// Whether an output of `len` values of `Y` is written around the caches
/// (x86-64 only: elsewhere the staging would be a copy for nothing).
fn streams<Y>(len: usize) -> bool {
    cfg!(target_arch = "x86_64") && len.saturating_mul(core::mem::size_of::<Y>()) >= STREAM_BYTES
}

/// Writes with non-temporal stores where the CPU has them (x86-64), plain
/// copies elsewhere; dropping it orders the stores before later ones.
struct Streamer {
    #[cfg(target_arch = "x86_64")]
    nt: crate::x86::stream::NtWriter,
}

impl Streamer {
    fn new() -> Streamer {
        Streamer {
            #[cfg(target_arch = "x86_64")]
            nt: crate::x86::stream::NtWriter::new(),
        }
    }

    /// Copies `src` into `dst` (same length, panics otherwise).
    #[inline]
    fn copy<Y: bytemuck::Pod>(&mut self, src: &[Y], dst: &mut [Y]) {
        #[cfg(target_arch = "x86_64")]
        self.nt
            .copy(bytemuck::cast_slice(src), bytemuck::cast_slice_mut(dst));
        #[cfg(not(target_arch = "x86_64"))]
        dst.copy_from_slice(src);
    }
}

/// An L1 staging buffer of streamed outputs.
#[repr(C, align(64))]
struct Stage([u64; 1024]);

/// Fills `out` by `fill(at, piece)`, which writes the values of
/// `out[at..][..piece.len()]` into `piece`; every piece but the last holds
/// whole `unit`s. Without `stream` that is one call on `out` itself; with
/// it, pieces of 8 KiB are made in an L1 buffer and copied out by a
/// [`Streamer`].
#[inline(always)]
fn staged<Y: bytemuck::Pod>(
    out: &mut [Y],
    stream: bool,
    unit: usize,
    mut fill: impl FnMut(usize, &mut [Y]),
) {
    if !stream {
        return fill(0, out);
    }
    let mut stage = Stage([0; 1024]);
    let stage = bytemuck::cast_slice_mut::<u64, Y>(&mut stage.0);
    let per = stage.len() / unit * unit;
    assert!(per > 0, "staged: a unit larger than the stage");
    let mut streamer = Streamer::new();
    for (i, piece) in out.chunks_mut(per).enumerate() {
        let stage = &mut stage[..piece.len()];
        fill(i * per, stage);
        streamer.copy(stage, piece);
    }
}

struct Quantize<'a, B> {
    x: &'a [f32],
    out: &'a mut [B],
    /// The explicit-SIMD quantizers' features (`x86::quantize_blocks`).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    simd: Option<QuantSimd>,
}

impl<B: PackedBlock> Task for Quantize<'_, B> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = self.simd {
            if crate::x86::quantize_blocks(t, self.x, self.out) {
                return;
            }
        }
        for (xb, blk) in self.x.chunks_exact(B::VALUES).zip(self.out.iter_mut()) {
            *blk = B::quantize_vectorized(xb);
        }
    }
}

/// [`Quantize`] with the NaN / Inf scan fused in: pieces of about 4 KiB
/// are scanned and then quantized while they are in L1, so the input is
/// read from memory once. (A software prefetch of the piece after next
/// measured no faster.)
struct QuantizeFinite<'a, B> {
    x: &'a [f32],
    out: &'a mut [B],
    simd: Option<QuantSimd>,
}

impl<B: PackedBlock> Task for QuantizeFinite<'_, B> {
    type Output = Result<(), usize>;
    #[inline(always)]
    fn run(self) -> Result<(), usize> {
        // Pieces of 1024 values (4 KiB): whole blocks of every format.
        let blocks = (1024 / B::VALUES).max(1);
        let step = blocks * B::VALUES;
        let mask = exponent_bits(WeightFormat::F32);
        let pieces = self.x.chunks(step).zip(self.out.chunks_mut(blocks));
        for (p, (x, out)) in pieces.enumerate() {
            let v = bytemuck::cast_slice::<f32, [u8; 4]>(x);
            if let Some(i) = (FirstNonFinite::<4> { v, mask }).run() {
                return Err(p * step + i);
            }
            let simd = self.simd;
            Quantize { x, out, simd }.run();
        }
        Ok(())
    }
}

struct Dequantize<'a, B> {
    blocks: &'a [B],
    out: &'a mut [f32],
}

impl<B: PackedBlock> Task for Dequantize<'_, B> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        for (blk, o) in self.blocks.iter().zip(self.out.chunks_exact_mut(B::VALUES)) {
            blk.dequantize(o);
        }
    }
}

struct FromF32<'a, E> {
    x: &'a [f32],
    out: &'a mut [E],
}

impl<E: FloatElem> Task for FromF32<'_, E> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        E::from_f32_slice_le(self.x, self.out)
    }
}

struct ToF32<'a, E> {
    x: &'a [E],
    out: &'a mut [f32],
    stream: bool,
}

impl<E: FloatElem> Task for ToF32<'_, E> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let x = self.x;
        staged(self.out, self.stream, 1, |at, out| {
            E::to_f32_slice(&x[at..at + out.len()], out)
        })
    }
}

/// Little-endian values (any alignment) widened to f32, a piece at a time
/// through an aligned buffer.
struct WidenLe<'a, E> {
    bytes: &'a [u8],
    out: &'a mut [f32],
    stream: bool,
    _e: core::marker::PhantomData<E>,
}

impl<E: FloatElem> Task for WidenLe<'_, E> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        const STEP: usize = 512;
        let s = core::mem::size_of::<E>();
        let mut buf = [E::from_f32_le(0.0); STEP];
        let bytes = self.bytes;
        staged(self.out, self.stream, STEP, |at, out| {
            let bytes = &bytes[at * s..][..out.len() * s];
            for (b, o) in bytes.chunks(STEP * s).zip(out.chunks_mut(STEP)) {
                let buf = &mut buf[..o.len()];
                bytemuck::cast_slice_mut::<E, u8>(buf).copy_from_slice(b);
                if cfg!(target_endian = "little") {
                    E::to_f32_slice(buf, o);
                } else {
                    for (y, v) in o.iter_mut().zip(buf.iter()) {
                        *y = v.le_to_f32();
                    }
                }
            }
        })
    }
}

/// The first index whose little-endian bit pattern `bits` has all of
/// `mask` set (an exponent of all ones: NaN or infinite).
struct FirstNonFinite<'a, const S: usize> {
    v: &'a [[u8; S]],
    mask: u32,
}

impl<const S: usize> Task for FirstNonFinite<'_, S> {
    type Output = Option<usize>;
    #[inline(always)]
    fn run(self) -> Option<usize> {
        let bad = |b: &[u8; S]| {
            let mut w = [0u8; 4];
            w[..S].copy_from_slice(b);
            u32::from_le_bytes(w) & self.mask == self.mask
        };
        // A fold over chunks vectorizes, unlike a short-circuiting search;
        // only the chunk that has one is searched.
        const CHUNK: usize = 1024;
        self.v.chunks(CHUNK).enumerate().find_map(|(c, chunk)| {
            if chunk.iter().fold(false, |any, b| any | bad(b)) {
                chunk.iter().position(bad).map(|i| c * CHUNK + i)
            } else {
                None
            }
        })
    }
}

struct DequantizePanel<'a, B> {
    panel: &'a [u8],
    scales_offset: usize,
    k: usize,
    /// The first block to dequantize (the earlier ones are written already).
    from: usize,
    out: &'a mut [f32],
    _b: core::marker::PhantomData<B>,
}

impl<B: PackedBlock> Task for DequantizePanel<'_, B> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let mut buf = [0.0f32; QK_K];
        let buf = &mut buf[..B::VALUES];
        for (r, row) in self.out.chunks_exact_mut(self.k).enumerate() {
            let row = &mut row[self.from * B::VALUES..];
            for (b, chunk) in row.chunks_mut(B::VALUES).enumerate() {
                let b = self.from + b;
                let (panel, so) = (self.panel, self.scales_offset);
                if chunk.len() == B::VALUES {
                    dequantize_panel_block::<B>(panel, so, b, r, chunk);
                } else {
                    dequantize_panel_block::<B>(panel, so, b, r, buf);
                    chunk.copy_from_slice(&buf[..chunk.len()]);
                }
            }
        }
    }
}

/// Row-major values of one whole panel (`NR` rows of `k`) into its
/// k-step-major layout, `NR` k-steps at a time.
struct Transpose<'a, const S: usize> {
    rows: &'a [[u8; S]],
    k: usize,
    /// The first k-step to pack (a multiple of `NR`; the earlier ones are
    /// written already).
    from: usize,
    out: &'a mut [[u8; S]],
}

impl<const S: usize> Task for Transpose<'_, S> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        // Tiles of NR k-steps x NR rows through a local buffer: whole
        // 16-value row pieces in, whole 16-value k-steps out, so that both
        // sides are contiguous vector loads and stores (the compiler turns
        // the fixed-size transposition into shuffles).
        let k = self.k;
        for (c, tile) in self.out[self.from * NR..].chunks_mut(NR * NR).enumerate() {
            let kk = self.from + c * NR;
            if let Ok(tile) = <&mut [[u8; S]; NR * NR]>::try_from(&mut *tile) {
                let mut buf = [[[0u8; S]; NR]; NR];
                for (l, b) in buf.iter_mut().enumerate() {
                    *b = self.rows[l * k + kk..][..NR].try_into().unwrap();
                }
                for step in 0..NR {
                    for l in 0..NR {
                        tile[step * NR + l] = buf[l][step];
                    }
                }
            } else {
                for l in 0..NR {
                    let src = &self.rows[l * k + kk..][..tile.len() / NR];
                    for (step, &v) in tile.chunks_exact_mut(NR).zip(src) {
                        step[l] = v;
                    }
                }
            }
        }
    }
}

/// Packs whole panels of a float format ([`PanelPacker::panel`]), with the
/// AVX-512 transpose's features detected once per matrix, not per panel.
#[derive(Clone, Copy)]
pub(crate) struct PanelPacker(Option<Avx512>);

impl PanelPacker {
    /// The packer of the dispatched load level (the AVX-512 transpose on
    /// that level, as the dequantization's panel loops).
    pub(crate) fn new() -> PanelPacker {
        PanelPacker(avx512_panels(Level::selected()))
    }

    /// Packs one whole panel: `rows` holds its `NR` rows of `k` values,
    /// `out` (`NR * k` values) receives k-step `kk`'s values at `kk * NR..`.
    ///
    /// 16- and 32-bit values go through the AVX-512 register transpose
    /// where the CPU has it (`x86/panel_rows.rs`): the clones' loop spends
    /// its time on the compiler's permutes of the tiles (`from_gguf_bytes`
    /// F16, 4096x4096, 1 thread: 2.3 -> 4.0 GB/s). The block formats' lane
    /// groups are packed as 32-bit values.
    ///
    /// With `check` (a float format), also returns whether some value may
    /// be non-finite: the AVX-512 path tests the values as they pass
    /// through its registers (the input is then read once), the rest is
    /// scanned. `false` without `check`.
    pub(crate) fn panel<const S: usize>(
        self,
        rows: &[[u8; S]],
        k: usize,
        out: &mut [[u8; S]],
        check: Option<WeightFormat>,
    ) -> bool
    where
        [u8; S]: bytemuck::Pod,
    {
        assert!(rows.len() == NR * k && out.len() == NR * k);
        let exp = check.map_or(0, exponent_bits);
        let (from, flagged) = pack_panel_avx512(self.0, rows, k, out, exp);
        if from < k {
            dispatch(Transpose { rows, k, from, out });
        }
        let Some(format) = check else { return false };
        if from == 0 {
            return first_non_finite_le(format, bytemuck::cast_slice(rows)).is_some();
        }
        // The AVX-512 path packed k-steps `..from` of every row; the rest of
        // each row is scanned.
        flagged
            || rows.chunks_exact(k).any(|row| {
                first_non_finite_le(format, bytemuck::cast_slice(&row[from..])).is_some()
            })
    }
}

/// The exponent field of a float format's values (little-endian bits): a
/// value is NaN or infinite when all of them are set.
fn exponent_bits(format: WeightFormat) -> u32 {
    match format {
        WeightFormat::F16 => 0x7C00,
        WeightFormat::BF16 => 0x7F80,
        _ => 0x7F80_0000,
    }
}

/// The whole tiles of a 16- or 32-bit panel by [`crate::x86::panel_rows`]'s
/// transpose given its features; returns the k-steps written (0 without
/// them and for other sizes) and whether one of their values has every bit
/// of `exp` set (see `pack_panel`).
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn pack_panel_avx512<const S: usize>(
    avx512: Option<Avx512>,
    rows: &[[u8; S]],
    k: usize,
    out: &mut [[u8; S]],
    exp: u32,
) -> (usize, bool)
where
    [u8; S]: bytemuck::Pod,
{
    match avx512 {
        #[cfg(target_arch = "x86_64")]
        Some(t) if S == 2 || S == 4 => crate::x86::panel_rows::pack_panel(t, rows, k, out, exp),
        _ => (0, false),
    }
}

struct WidenPanel<'a, E> {
    panel: &'a [E],
    k: usize,
    /// The first k-step to widen (a multiple of `NR`; the earlier ones are
    /// written already).
    from: usize,
    out: &'a mut [f32],
}

impl<E: FloatElem> Task for WidenPanel<'_, E> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        // k-step `kk` of the panel holds its rows' values `NR` apart.
        // Tiles of NR k-steps (NR * NR contiguous values): transposed
        // through a fixed-size buffer (shuffles), then each row's NR values
        // widened into place (one vector store per row).
        let k = self.k;
        for (c, tile) in self.panel[self.from * NR..k * NR]
            .chunks(NR * NR)
            .enumerate()
        {
            let kk = self.from + c * NR;
            let w = tile.len() / NR;
            let mut buf = [[E::from_f32_le(0.0); NR]; NR];
            if tile.len() == NR * NR {
                // Whole k-steps copied in, then each row written in order
                // from them (the shape the compiler turns into permutes).
                let mut steps = [[E::from_f32_le(0.0); NR]; NR];
                for (st, vals) in steps.iter_mut().zip(tile.chunks_exact(NR)) {
                    *st = vals.try_into().unwrap();
                }
                for (l, b) in buf.iter_mut().enumerate() {
                    for (step, st) in steps.iter().enumerate() {
                        b[step] = st[l];
                    }
                }
            } else {
                for (step, vals) in tile.chunks_exact(NR).enumerate() {
                    for (b, &v) in buf.iter_mut().zip(vals) {
                        b[step] = v;
                    }
                }
            }
            for (b, row) in buf.iter().zip(self.out.chunks_exact_mut(k)) {
                E::to_f32_slice(&b[..w], &mut row[kk..kk + w]);
            }
        }
    }
}

/// llama.cpp's reference quantizer (`PackedBlock::quantize`) of `x` into
/// `out`, on the dispatched clone; `x.len()` must equal `out.len()` times the block size
/// (panics otherwise).
pub fn quantize_blocks<B: PackedBlock>(x: &[f32], out: &mut [B]) {
    quantize_blocks_at(On::Dispatched, x, out)
}

/// [`quantize_blocks`] on the clone of `level`.
pub fn quantize_blocks_on<B: PackedBlock>(
    level: Level,
    x: &[f32],
    out: &mut [B],
) -> Result<(), Unavailable> {
    quantize_blocks_at(On::checked(level)?, x, out);
    Ok(())
}

fn quantize_blocks_at<B: PackedBlock>(on: On, x: &[f32], out: &mut [B]) {
    assert_eq!(
        x.len(),
        out.len() * B::VALUES,
        "quantize_blocks: length mismatch"
    );
    let simd = quant_simd(on.level());
    // The blocks are a fraction of the input's bytes: plain stores.
    split(x, out, (B::VALUES, 1), Stores::BySize, |x, out, _| {
        on.run(Quantize { x, out, simd })
    })
}

/// [`quantize_blocks`] of `x` if it holds no NaN or infinity, checked as
/// it is quantized (one read of `x`); otherwise the index of the first
/// such value, with `out` partly written. On the calling thread: meant for
/// one row at a time. Panics as [`quantize_blocks`].
pub fn quantize_blocks_finite<B: PackedBlock>(x: &[f32], out: &mut [B]) -> Result<(), usize> {
    quantize_blocks_finite_at(On::Dispatched, x, out)
}

/// [`quantize_blocks_finite`] on the clone of `level`.
pub fn quantize_blocks_finite_on<B: PackedBlock>(
    level: Level,
    x: &[f32],
    out: &mut [B],
) -> Result<Result<(), usize>, Unavailable> {
    Ok(quantize_blocks_finite_at(On::checked(level)?, x, out))
}

fn quantize_blocks_finite_at<B: PackedBlock>(
    on: On,
    x: &[f32],
    out: &mut [B],
) -> Result<(), usize> {
    assert_eq!(
        x.len(),
        out.len() * B::VALUES,
        "quantize_blocks_finite: length mismatch"
    );
    let simd = quant_simd(on.level());
    on.run(QuantizeFinite { x, out, simd })
}

/// llama.cpp's dequantization (`PackedBlock::dequantize`) of `blocks`, on
/// the dispatched clone; `out.len()` must equal `blocks.len()` times the block size.
pub fn dequantize_blocks<B: PackedBlock>(blocks: &[B], out: &mut [f32]) {
    dequantize_blocks_at(On::Dispatched, blocks, out)
}

/// [`dequantize_blocks`] on the clone of `level`.
pub fn dequantize_blocks_on<B: PackedBlock>(
    level: Level,
    blocks: &[B],
    out: &mut [f32],
) -> Result<(), Unavailable> {
    dequantize_blocks_at(On::checked(level)?, blocks, out);
    Ok(())
}

fn dequantize_blocks_at<B: PackedBlock>(on: On, blocks: &[B], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * B::VALUES,
        "dequantize_blocks: length mismatch"
    );
    // Plain stores: dequantization is compute-bound here (Q8_0 6-7 GB/s,
    // Q6_K under 2 on one thread), and streaming its output measured level
    // or slower (Q6_K 0.8-1.3 against 1.7-1.8).
    split(
        blocks,
        out,
        (1, B::VALUES),
        Stores::BySize,
        |blocks, out, _| on.run(Dequantize { blocks, out }),
    )
}

/// ggml's conversion of f32 values to a float format
/// ([`FloatElem::from_f32_le`]), on the dispatched clone; panics unless
/// `x.len() == out.len()`.
pub fn floats_from_f32<E: FloatElem>(x: &[f32], out: &mut [E]) {
    floats_from_f32_at(On::Dispatched, x, out)
}

/// [`floats_from_f32`] on the clone of `level`.
pub fn floats_from_f32_on<E: FloatElem>(
    level: Level,
    x: &[f32],
    out: &mut [E],
) -> Result<(), Unavailable> {
    floats_from_f32_at(On::checked(level)?, x, out);
    Ok(())
}

fn floats_from_f32_at<E: FloatElem>(on: On, x: &[f32], out: &mut [E]) {
    assert_eq!(x.len(), out.len(), "floats_from_f32: length mismatch");
    // Plain stores: the output is half the input's bytes, and streaming it
    // measured level or slower (f32 -> f16 medians 5.7 against 6.3 GB/s).
    let avx512 = avx512_panels(on.level());
    split(x, out, (1, 1), Stores::BySize, |x, out, _| {
        let from = narrow_avx512(avx512, x, out);
        if from < x.len() {
            let (x, out) = (&x[from..], &mut out[from..]);
            on.run(FromF32 { x, out })
        }
    })
}

/// Float-format values (native order) widened to f32, exactly, on the
/// dispatched clone; panics unless `x.len() == out.len()`.
pub fn floats_to_f32<E: FloatElem>(x: &[E], out: &mut [f32]) {
    floats_to_f32_at(On::Dispatched, x, out, Stores::BySize)
}

/// [`floats_to_f32`] on the clone of `level`.
pub fn floats_to_f32_on<E: FloatElem>(
    level: Level,
    x: &[E],
    out: &mut [f32],
) -> Result<(), Unavailable> {
    floats_to_f32_at(On::checked(level)?, x, out, Stores::BySize);
    Ok(())
}

fn floats_to_f32_at<E: FloatElem>(on: On, x: &[E], out: &mut [f32], stores: Stores) {
    assert_eq!(x.len(), out.len(), "floats_to_f32: length mismatch");
    split(x, out, (1, 1), stores, |x, out, stream| {
        on.run(ToF32 { x, out, stream })
    })
}

/// The little-endian values of a float format (F16, BF16, F32; a GGUF or
/// safetensors tensor, any alignment) widened to f32, exactly, on the
/// dispatched clone. Panics for a block format or unless `bytes` holds
/// `out.len()` values.
pub fn le_bytes_to_f32(format: WeightFormat, bytes: &[u8], out: &mut [f32]) {
    le_bytes_to_f32_at(format, bytes, out, Stores::BySize)
}

fn le_bytes_to_f32_at(format: WeightFormat, bytes: &[u8], out: &mut [f32], stores: Stores) {
    match_format!(
        format,
        B => panic!("le_bytes_to_f32: {} is a block format", B::INFO.name),
        E => {
            let s = core::mem::size_of::<E>();
            assert!(
                bytes.len() / s == out.len() && bytes.len().is_multiple_of(s),
                "le_bytes_to_f32: length mismatch"
            );
            split(bytes, out, (s, 1), stores, |bytes, out, stream| {
                dispatch(WidenLe::<E> {
                    bytes,
                    out,
                    stream,
                    _e: core::marker::PhantomData,
                })
            })
        },
    )
}

/// The index of the first NaN or infinite value among the little-endian
/// values of a float format (F16, BF16, F32) in `bytes` (any alignment), on
/// the dispatched clone. Panics for a block format or a length that is not
/// a whole number of values.
pub fn first_non_finite_le(format: WeightFormat, bytes: &[u8]) -> Option<usize> {
    first_non_finite_at(On::Dispatched, format, bytes)
}

/// [`first_non_finite_le`] on the clone of `level`.
pub fn first_non_finite_le_on(
    level: Level,
    format: WeightFormat,
    bytes: &[u8],
) -> Result<Option<usize>, Unavailable> {
    Ok(first_non_finite_at(On::checked(level)?, format, bytes))
}

/// [`first_non_finite_le`] of values in native byte order.
pub fn first_non_finite<E: FloatElem>(v: &[E]) -> Option<usize> {
    if cfg!(target_endian = "little") {
        first_non_finite_le(E::FORMAT, bytemuck::cast_slice(v))
    } else {
        v.iter().position(|e| e.is_non_finite())
    }
}

fn first_non_finite_at(on: On, format: WeightFormat, bytes: &[u8]) -> Option<usize> {
    match_format!(
        format,
        B => panic!("first_non_finite_le: {} is a block format", B::INFO.name),
        E => {
            const S: usize = core::mem::size_of::<E>();
            let mask = exponent_bits(E::FORMAT);
            let v = bytemuck::cast_slice::<u8, [u8; S]>(bytes);
            let scan = |v| on.run(FirstNonFinite::<S> { v, mask });
            if v.len() < PARALLEL_VALUES {
                return scan(v);
            }
            let piece = v.par_chunks(PIECE).position_first(|c| scan(c).is_some())?;
            scan(&v[piece * PIECE..]).map(|i| piece * PIECE + i)
        },
    )
}

/// All of `m`'s weights as f32, `[n, k]` row-major (`out.len() == n * k`,
/// panics otherwise), as [`PackedMatrix::dequantize_row`] gives them: panels
/// in parallel for large matrices, each on the dispatched clone.
pub fn dequantize_matrix(m: &PackedMatrix, out: &mut [f32]) {
    dequantize_matrix_at(On::Dispatched, m, out)
}

/// [`dequantize_matrix`] on the clone of `level`.
pub fn dequantize_matrix_on(
    level: Level,
    m: &PackedMatrix,
    out: &mut [f32],
) -> Result<(), Unavailable> {
    dequantize_matrix_at(On::checked(level)?, m, out);
    Ok(())
}

fn dequantize_matrix_at(on: On, m: &PackedMatrix, out: &mut [f32]) {
    let (n, k) = (m.n(), m.k());
    assert_eq!(out.len(), n * k, "dequantize_matrix: length mismatch");
    // The AVX-512 panel loops' features, detected once per call.
    let avx512 = avx512_panels(on.level());
    let panel = |(p, out): (usize, &mut [f32])| {
        let panel = m.panel(p);
        match_format!(
            m.format(),
            B => {
                let so = m.scales_offset();
                let from = block_panel_avx512::<B>(avx512, panel, so, k, out) / B::VALUES;
                if from * B::VALUES < k {
                    on.run(DequantizePanel::<B> {
                        panel,
                        scales_offset: so,
                        k,
                        from,
                        out,
                        _b: core::marker::PhantomData,
                    })
                }
            },
            E => {
                let panel = bytemuck::cast_slice(panel);
                let from = widen_panel_avx512::<E>(avx512, panel, k, out);
                if from < k {
                    on.run(WidenPanel::<E> { panel, k, from, out })
                }
            },
        )
    };
    if out.len() < PARALLEL_VALUES {
        out.chunks_mut(NR * k).enumerate().for_each(panel);
    } else {
        out.par_chunks_mut(NR * k).enumerate().for_each(panel);
    }
}

/// Proof of the AVX-512 panel loops' features (`x86/panel_rows.rs`); none
/// can exist elsewhere.
#[cfg(target_arch = "x86_64")]
use crate::x86::panel_rows::Avx512;
#[cfg(not(target_arch = "x86_64"))]
#[derive(Clone, Copy)]
enum Avx512 {}

/// Proof of the explicit-SIMD quantizers' features (`x86::quantize_blocks`); none
/// can exist elsewhere.
#[cfg(target_arch = "x86_64")]
use crate::x86::QuantSimd;
#[cfg(not(target_arch = "x86_64"))]
#[derive(Clone, Copy)]
enum QuantSimd {}

/// The explicit-SIMD quantizers of the clones of `level` (none for the
/// baseline).
fn quant_simd(level: Level) -> Option<QuantSimd> {
    #[cfg(target_arch = "x86_64")]
    return QuantSimd::of(level);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = level;
        None
    }
}

/// The AVX-512 panel loops' features when the load level is AVX-512.
fn avx512_panels(level: Level) -> Option<Avx512> {
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx512 {
        return Avx512::detect();
    }
    let _ = level;
    None
}

/// The whole blocks of a Q8_0 / Q4_K / Q5_K / Q6_K panel by the AVX-512
/// column-then-transpose loop (`x86/panel_rows.rs`, same values) given its
/// features; returns the columns written (0 without them and for other
/// formats: the other 32-value formats measured faster in the clones' loop).
#[cfg_attr(
    not(target_arch = "x86_64"),
    allow(unused_variables, clippy::extra_unused_type_parameters)
)]
fn block_panel_avx512<B: PackedBlock>(
    avx512: Option<Avx512>,
    panel: &[u8],
    so: usize,
    k: usize,
    out: &mut [f32],
) -> usize {
    match avx512 {
        #[cfg(target_arch = "x86_64")]
        Some(t) if crate::x86::panel_rows::has_block_panel::<B>() => {
            crate::x86::panel_rows::block_panel::<B>(t, panel, so, k, out)
        }
        _ => 0,
    }
}

/// The whole tiles of a float panel by the AVX-512 transpose
/// (`x86/panel_rows.rs`, same values) given its features: the loop of the
/// clones spends most of its time on the compiler's permutes there. Returns
/// the k-steps written (0 without them).
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn widen_panel_avx512<E: FloatElem>(
    avx512: Option<Avx512>,
    panel: &[E],
    k: usize,
    out: &mut [f32],
) -> usize {
    match avx512 {
        #[cfg(target_arch = "x86_64")]
        Some(t) => crate::x86::panel_rows::widen_panel(t, &panel[..k * NR], k, out),
        _ => 0,
    }
}

/// The whole vectors of `x` narrowed to F16 / BF16 by the AVX-512 loop
/// (`x86/narrow.rs`, same bits) given its features; returns the values
/// written (0 without them and for F32).
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn narrow_avx512<E: FloatElem>(avx512: Option<Avx512>, x: &[f32], out: &mut [E]) -> usize {
    match avx512 {
        #[cfg(target_arch = "x86_64")]
        Some(t) if core::mem::size_of::<E>() == 2 => {
            use crate::x86::narrow::narrow_row;
            let out = bytemuck::cast_slice_mut(out);
            match E::FORMAT {
                WeightFormat::BF16 => narrow_row::<true>(t, x, out),
                _ => narrow_row::<false>(t, x, out),
            }
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{SubScale, QK};
    use half::{bf16, f16};

    /// The levels this CPU runs; the others are reported as skipped.
    fn levels() -> Vec<Level> {
        Level::ALL
            .into_iter()
            .filter(|l| {
                let ok = l.available();
                if !ok {
                    println!("{l}: SKIPPED (this CPU lacks it)");
                }
                ok
            })
            .collect()
    }

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Blocks of values whose quantization is sensitive to order and
    /// rounding: NaN (several payloads), ±inf, ±0.0 together (also as the
    /// minimum or maximum), subnormals,
    /// blocks so small that `1 / d` overflows, equal magnitudes of both
    /// signs, exact ties of each quantizer's rounding (half-integers and
    /// integers at scales 2^e), all-equal blocks and plain random values.
    fn special_rows(blocks: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng(seed | 1);
        let specials = [
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7F80_0001),
            f32::from_bits(0xFFC0_1234),
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            f32::from_bits(1),
            -f32::from_bits(0x0040_0000),
            f32::MIN_POSITIVE,
            1e-39,
            -3e-39,
            f32::MAX,
            -f32::MAX,
            65504.0,
            1e7,
        ];
        let mut x = Vec::with_capacity(blocks * QK);
        for _ in 0..blocks {
            let kind = rng.below(10);
            let scale = 2f32.powi(rng.below(40) as i32 - 20);
            let fill = specials[rng.below(specials.len() as u64) as usize];
            for _ in 0..QK {
                let r = rng.next();
                let v = match kind {
                    // Half-integers and integers in -16..16: exact ties.
                    0 | 1 => ((r % 65) as f32 - 32.0) * 0.5 * scale,
                    // Maxima of both signs, zeros of both signs.
                    2 => [8.0, -8.0, 0.0, -0.0, 16.0, -16.0][(r % 6) as usize] * scale,
                    3 => fill,
                    4 => specials[(r % specials.len() as u64) as usize],
                    5 if r.is_multiple_of(7) => specials[(r >> 8) as usize % specials.len()],
                    // Any bit pattern.
                    6 => f32::from_bits((r >> 16) as u32),
                    // Zeros of both signs at the minimum or the maximum.
                    7 | 8 => {
                        let v = [0.0, -0.0, 1.0, 3.0][(r % 4) as usize] * scale;
                        if kind == 7 {
                            v
                        } else {
                            -v
                        }
                    }
                    _ => ((r >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale,
                };
                // Miri makes the NaN payloads of arithmetic results
                // non-deterministic (as Rust allows; hardware fixes them), so
                // NaN inputs are compared on hardware only.
                x.push(if cfg!(miri) && v.is_nan() {
                    f32::INFINITY
                } else {
                    v
                });
            }
        }
        x
    }

    fn same_f32(a: &[f32], b: &[f32]) -> bool {
        crate::first_difference(a, b).is_none()
    }

    #[test]
    fn every_clone_quantizes_and_dequantizes_as_the_reference() {
        let rows = special_rows(if cfg!(miri) { 24 } else { 3000 }, 0x5EED);
        // The same rows without NaN too (the k-quants' side-by-side search
        // runs on NaN-free super-blocks only; most of the above hold one).
        let no_nan: Vec<f32> = rows
            .iter()
            .enumerate()
            .map(|(i, &v)| match (v.is_nan(), i % 3) {
                (false, _) => v,
                (true, 0) => f32::INFINITY,
                (true, 1) => -f32::MAX,
                (true, _) => -0.0,
            })
            .collect();
        for (x, level) in [&rows, &no_nan]
            .into_iter()
            .flat_map(|x| levels().into_iter().map(move |l| (x, l)))
        {
            for f in WeightFormat::ALL {
                match_format!(
                    f,
                    B => {
                        let want: Vec<B> = x
                            .chunks_exact(B::VALUES)
                            .map(B::quantize)
                            .collect();
                        let mut got = vec![B::padding(); want.len()];
                        quantize_blocks_on(level, x, &mut got).unwrap();
                        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                            assert!(g == w, "{f} {level} block {i}: {g:?} != {w:?} for {:?}", &x[i * B::VALUES..(i + 1) * B::VALUES]);
                        }
                        // Dequantization against its definition, from the
                        // codes and scales (reference blocks).
                        let mut out = vec![0.0; x.len()];
                        dequantize_blocks_on(level, &want, &mut out).unwrap();
                        let def: Vec<f32> = want
                            .iter()
                            .flat_map(|b| {
                                (0..B::VALUES).map(move |j| {
                                    let u = b.ucode(j) as i32;
                                    match b.sub_scale(j / QK) {
                                        SubScale::Offset { d } => (u - B::OFFSET) as f32 * d,
                                        SubScale::Min { d, m } => u as f32 * d + m,
                                        SubScale::Halves { d, s } => {
                                            d * s[(j % QK) / 16] as f32 * (u - 32) as f32
                                        }
                                    }
                                })
                            })
                            .collect();
                        assert!(same_f32(&out, &def), "{f} {level}: dequantization");
                    },
                    E => {
                        let want: Vec<E> = x.iter().map(|&v| E::from_f32_le(v)).collect();
                        let mut got = vec![E::from_f32_le(0.0); x.len()];
                        floats_from_f32_on(level, x, &mut got).unwrap();
                        assert!(
                            bytemuck::cast_slice::<E, u8>(&got) == bytemuck::cast_slice::<E, u8>(&want),
                            "{f} {level}: conversion from f32"
                        );
                    },
                );
            }
        }
    }

    #[test]
    fn every_clone_widens_every_half_and_bf16_value() {
        // Every bit pattern (a sample of them under Miri).
        let step = if cfg!(miri) { 251 } else { 1 };
        let bits: Vec<u16> = (0..=u16::MAX).step_by(step).collect();
        let h: Vec<f16> = bits.iter().map(|&b| f16::from_bits(b)).collect();
        let b: Vec<bf16> = bits.iter().map(|&b| bf16::from_bits(b)).collect();
        let mut out = vec![0.0; bits.len()];
        for level in levels() {
            floats_to_f32_on(level, &h, &mut out).unwrap();
            let want: Vec<f32> = h.iter().map(|v| v.to_f32()).collect();
            assert!(same_f32(&out, &want), "F16 {level}");
            // bf16 widening is exact: the very bits, NaN payloads included.
            floats_to_f32_on(level, &b, &mut out).unwrap();
            assert!(
                out.iter()
                    .zip(&b)
                    .all(|(o, v)| o.to_bits() == (v.to_bits() as u32) << 16),
                "BF16 {level}"
            );
        }
    }

    /// Widened outputs written around the caches (non-temporal stores
    /// through the staging buffer, forced here; by size they are only
    /// streamed from 8 MiB) hold the plain stores' values, at any alignment
    /// of the input and output and with a last piece shorter than the stage.
    #[test]
    fn streamed_outputs_equal_plain_ones() {
        let x = special_rows(if cfg!(miri) { 8 } else { 700 }, 0x57EA);
        let streamed = Stores::Streaming;
        for (level, off) in levels()
            .into_iter()
            .flat_map(|l| (0..3).map(move |o| (l, o)))
        {
            let on = On::Level(level);
            let mut got = vec![0.0f32; x.len() + off];
            let mut want = vec![0.0f32; x.len()];
            for f in WeightFormat::ALL {
                match_format!(
                    f,
                    // Only the widening streams.
                    _B => {},
                    E => {
                        let mut plain = vec![E::from_f32_le(0.0); x.len()];
                        floats_from_f32_at(on, &x, &mut plain);
                        floats_to_f32_at(on, &plain, &mut want, Stores::BySize);
                        floats_to_f32_at(on, &plain, &mut got[off..], streamed);
                        assert!(same_f32(&got[off..], &want), "{f} {level} +{off}: to f32");
                        // The values' bytes at an odd address for odd `off`.
                        let mut bytes = vec![0u8; off];
                        bytes.extend_from_slice(bytemuck::cast_slice::<E, u8>(&plain));
                        le_bytes_to_f32_at(f, &bytes[off..], &mut got[off..], streamed);
                        assert!(same_f32(&got[off..], &want), "{f} +{off}: little-endian bytes");
                    },
                );
            }
        }
    }

    #[test]
    fn little_endian_bytes_widen_as_their_values() {
        let x = special_rows(200, 3);
        for f in [WeightFormat::F16, WeightFormat::BF16, WeightFormat::F32] {
            let mut bytes = vec![0u8; f.row_bytes(x.len()) + 1];
            // Odd offset: any alignment.
            f.quantize_to_bytes(&x, &mut bytes[1..]);
            let mut want = vec![0.0; x.len()];
            f.dequantize_bytes(&bytes[1..], &mut want);
            let mut got = vec![0.0; x.len()];
            le_bytes_to_f32(f, &bytes[1..], &mut got);
            assert!(same_f32(&got, &want), "{f}");
        }
    }

    #[test]
    fn every_clone_finds_the_first_non_finite_value() {
        // Long enough for the parallel path; the non-finite values land in
        // various pieces (and none at all).
        let len = if cfg!(miri) {
            3000
        } else {
            PARALLEL_VALUES + 3 * PIECE + 17
        };
        let mut rng = Rng(99);
        for level in levels() {
            for f in [WeightFormat::F16, WeightFormat::BF16, WeightFormat::F32] {
                for case in 0..6 {
                    let mut x = vec![1.5f32; len];
                    let mut at = Vec::new();
                    for _ in 0..case {
                        at.push(rng.below(len as u64) as usize);
                    }
                    for (i, &p) in at.iter().enumerate() {
                        x[p] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][i % 3];
                    }
                    // A large finite value of each format's exponent range stays finite.
                    x[len - 1] = 6e4;
                    let mut bytes = vec![0u8; f.row_bytes(len)];
                    f.quantize_to_bytes(&x, &mut bytes);
                    let want = at.iter().copied().min();
                    let got = first_non_finite_le_on(level, f, &bytes).unwrap();
                    assert_eq!(got, want, "{f} {level} case {case}");
                }
            }
        }
    }

    /// The fused scan: finite rows quantize to [`quantize_blocks_on`]'s
    /// bytes; a NaN or infinity anywhere (first and last value, either side
    /// of a piece's edge, in later pieces, two at once) gives the first
    /// one's index.
    #[test]
    fn every_clone_quantizes_finite_rows_and_finds_their_first_non_finite_value() {
        let len = if cfg!(miri) { 512 } else { 8 * QK_K };
        let finite: Vec<f32> = special_rows(len / QK, 0xF1)
            .into_iter()
            .map(|v| if v.is_finite() { v } else { -0.0 })
            .collect();
        let cases: &[&[usize]] = &[
            &[0],
            &[len - 1],
            &[1023, 1024],
            &[1024],
            &[len / 2 + 5, 300],
        ];
        for level in levels() {
            for f in WeightFormat::ALL
                .into_iter()
                .filter(|f| f.is_block_quantized())
            {
                match_format!(
                    f,
                    B => {
                        let mut want = vec![B::padding(); len / B::VALUES];
                        quantize_blocks_on(level, &finite, &mut want).unwrap();
                        let mut got = vec![B::padding(); len / B::VALUES];
                        let r = quantize_blocks_finite_on(level, &finite, &mut got).unwrap();
                        assert_eq!(r, Ok(()), "{f} {level}");
                        assert!(got == want, "{f} {level}: bytes");
                        for (c, at) in cases.iter().enumerate() {
                            let at: Vec<usize> = at.iter().map(|&i| i.min(len - 1)).collect();
                            for special in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                                let mut x = finite.clone();
                                for &i in &at {
                                    x[i] = special;
                                }
                                let r = quantize_blocks_finite_on(level, &x, &mut got).unwrap();
                                let first = *at.iter().min().unwrap();
                                assert_eq!(r, Err(first), "{f} {level} case {c} {special}");
                            }
                        }
                    },
                    E => unreachable!("{}", E::INFO.name),
                );
            }
        }
    }

    #[test]
    fn every_clone_dequantizes_packed_matrices_as_rows() {
        // Partial panels and blocks; the last shape is split over rayon.
        let shapes: &[(usize, usize)] = if cfg!(miri) {
            &[(1, 1), (17, 45)]
        } else {
            &[(1, 1), (17, 45), (33, 64), (40, 7000)]
        };
        for &(n, k) in shapes {
            let x = special_rows((n * k).div_ceil(QK), n as u64)
                .into_iter()
                .map(|v| {
                    if v.is_finite() {
                        v.clamp(-6e4, 6e4)
                    } else {
                        1.0
                    }
                })
                .take(n * k)
                .collect::<Vec<f32>>();
            for f in WeightFormat::ALL {
                let m = match_format!(
                    f,
                    B => PackedMatrix::pack_blocks::<B, ()>(n, k, |r, out| {
                        for (blk, c) in out.iter_mut().zip(x[r * k..(r + 1) * k].chunks(B::VALUES)) {
                            let mut v = [0.0; QK_K];
                            v[..c.len()].copy_from_slice(c);
                            *blk = B::quantize(&v[..B::VALUES]);
                        }
                        Ok(())
                    })
                    .unwrap(),
                    E => {
                        let v: Vec<E> = x.iter().map(|&v| E::from_f32_le(v)).collect();
                        PackedMatrix::from_floats(&v, n, k)
                    },
                );
                let mut want = vec![0.0; n * k];
                for (r, row) in want.chunks_exact_mut(k).enumerate() {
                    m.dequantize_row(r, row);
                }
                for level in levels() {
                    let mut got = vec![f32::NAN; n * k];
                    dequantize_matrix_on(level, &m, &mut got).unwrap();
                    assert!(same_f32(&got, &want), "{f} {level} {n}x{k}");
                }
            }
        }
    }

    #[test]
    fn unavailable_levels_are_errors() {
        for level in Level::ALL {
            let r = quantize_blocks_on::<crate::BlockQ8_0>(level, &[], &mut []);
            assert_eq!(r.is_ok(), level.available(), "{level}");
        }
        // multiversion's choice is the best level `available` finds.
        let best = *Level::ALL.iter().rev().find(|l| l.available()).unwrap();
        assert_eq!(Level::selected(), best);
    }

    #[test]
    fn quantizers_of_any_bit_patterns_match_on_every_clone() {
        fn prop(bits: Vec<u32>) -> bool {
            let x: Vec<f32> = bits
                .iter()
                .cycle()
                .take(bits.len().div_ceil(QK_K) * QK_K)
                .map(|&b| f32::from_bits(b))
                // As in `special_rows`: NaN on hardware only.
                .map(|v| if cfg!(miri) && v.is_nan() { 0.0 } else { v })
                .collect();
            let mut ok = true;
            for level in Level::ALL.into_iter().filter(|l| l.available()) {
                for f in WeightFormat::ALL
                    .into_iter()
                    .filter(|f| f.is_block_quantized())
                {
                    let mut want = vec![0u8; f.row_bytes(x.len())];
                    f.quantize_to_bytes(&x, &mut want);
                    let got = match_format!(
                        f,
                        B => {
                            let mut b = vec![B::padding(); x.len() / B::VALUES];
                            quantize_blocks_on(level, &x, &mut b).unwrap();
                            bytemuck::cast_slice::<B, u8>(&b).to_vec()
                        },
                        E => unreachable!("{}", E::INFO.name),
                    );
                    ok &= got == want;
                }
            }
            ok
        }
        quickcheck::QuickCheck::new()
            .tests(if cfg!(miri) { 2 } else { 200 })
            .quickcheck(prop as fn(Vec<u32>) -> bool);
    }
}
