//! x86-64 kernels: the tiles are written once ([`tiles`]) over a register
//! width and an integer dot ([`simd`]); `avx2.rs` (AVX2, AVX-VNNI: 256-bit)
//! and `avx512.rs` (AVX-512 BW, VNNI: 512-bit) supply the instructions, the
//! tiling constants, their activation quantizer and their kernel tables.
//! Load-time helpers sit beside them: `stream.rs` (non-temporal stores for
//! large outputs), `panel_rows.rs` (F16, BF16 and k-quant panels back to
//! rows), and the quantizers with explicit SIMD ([`quantize_blocks`]):
//! `kquant_search.rs` (the k-quants' scale searches, AVX-512 and AVX2) and
//! `offset_quant.rs` (Q4_0, Q5_0; AVX-512 and AVX2).

/// Defines module `$name` holding the kernel table of one ISA level: thin
/// `#[target_feature]` entry points around the parent module's
/// `quantize_row` and the generic tiles `q_tile::<$width, $dot, B>` (every
/// block format `B`) and `f_tile::<$width, E>` (every float format `E`), one
/// per format of the format table. `floats_of: $other` takes the float tiles
/// of the table `$other` of the same width (the same code: float tiles use
/// no integer dot), whose features this level must include; each width
/// compiles its float tiles once.
macro_rules! kernel_table {
    ($name:ident, $isa:expr, $features:literal, $width:ty, $dot:ty,
     gemv_panels: $gemv:expr, gemm_panels: $gemm:expr, pack_x: $pack:expr) => {
        kernel_table!(@table $name, $isa, $features, $width, $dot, $gemv, $gemm, $pack, {
            #[target_feature(enable = $features)]
            pub(super) unsafe fn float<E: FloatKind>(a: &mut TileArgs) {
                // SAFETY: as for `block`.
                unsafe { f_tile::<$width, E>(a) }
            }
        });
    };
    ($name:ident, $isa:expr, $features:literal, $width:ty, $dot:ty,
     gemv_panels: $gemv:expr, gemm_panels: $gemm:expr, pack_x: $pack:expr,
     floats_of: $other:ident) => {
        kernel_table!(@table $name, $isa, $features, $width, $dot, $gemv, $gemm, $pack, {
            use super::$other::float;
            const _: () = assert!(crate::isa::features_include($features, super::$other::FEATURES));
        });
    };
    (@table $name:ident, $isa:expr, $features:literal, $width:ty, $dot:ty,
     $gemv:expr, $gemm:expr, $pack:expr, { $($floats:tt)* }) => {
        pub(crate) mod $name {
            use super::*;

            // The ISA's declaration (crate::isa) and this table enable the same features.
            const _: () = assert!(crate::isa::same_str($isa.features(), $features));
            // Read by a table that borrows this level's float tiles.
            #[allow(dead_code)]
            pub(super) const FEATURES: &str = $features;

            #[target_feature(enable = $features)]
            unsafe fn quantize(x: &[f32], offset: i32, out: &mut [ActBlock]) {
                // SAFETY: this function's features are the ones quantize_row needs.
                unsafe { quantize_row(x, offset, out) }
            }
            #[target_feature(enable = $features)]
            unsafe fn block<B: Kind>(a: &mut TileArgs) {
                // SAFETY: features enabled here; the driver upholds TileArgs' contract.
                unsafe { q_tile::<$width, $dot, B>(a) }
            }
            $($floats)*

            /// This level's tile of every format.
            const fn tiles() -> crate::Tiles {
                let mut t = crate::Tiles::NONE;
                let mut i = 0;
                while i < crate::WeightFormat::COUNT {
                    let f = crate::WeightFormat::ALL[i];
                    t = crate::match_format!(
                        f,
                        B => t.with(f, block::<B>),
                        E => t.with(f, float::<E>),
                    );
                    i += 1;
                }
                t
            }

            pub(crate) static KERNELS: crate::Kernels = crate::Kernels {
                isa: $isa,
                quantize_row: quantize,
                tiles: tiles(),
                gemv_panels: $gemv,
                gemm_panels: $gemm,
                pack_x: $pack,
            };
        }
    };
}

/// The out-of-line row groups of a level's tiles, as trait methods with the
/// level's `$features` (checked equal to `$isa`'s): `floats` gives
/// [`Width::f_chunk`](simd::Width::f_chunk) of the width whose float tiles
/// the level compiles, `vnni` gives [`Vnni::chunks`](simd::Vnni::chunks).
macro_rules! row_groups {
    (floats: $width:ty, $isa:expr, $features:literal) => {
        #[inline(never)]
        #[target_feature(enable = $features)]
        unsafe fn f_chunk<
            E: FloatKind,
            const P: usize,
            const R: usize,
            const S: bool,
            const KEEP: bool,
        >(
            cw: super::tiles::ChunkW<P>,
            x: *const f32,
            xs: usize,
            kc: usize,
            out: *mut f32,
            ldo: usize,
            first: bool,
            pf: super::tiles::Lines,
        ) {
            const { assert!(crate::isa::same_str($isa.features(), $features)) };
            // SAFETY: forwarded contract; this function has the features of
            // the level whose float tiles run on this width.
            unsafe {
                super::tiles::f_chunk::<$width, E, P, R, S, KEEP>(
                    cw, x, xs, kc, out, ldo, first, pf,
                )
            }
        }
    };
    (vnni: $width:ty, $isa:expr, $features:literal) => {
        #[inline(never)]
        #[target_feature(enable = $features)]
        unsafe fn chunks<
            K: Kind,
            const P: usize,
            const R: usize,
            const SRC: u8,
            const ACC: bool,
        >(
            pass: &super::tiles::Pass<'_, '_, P>,
            i0: usize,
        ) {
            const { assert!(crate::isa::same_str($isa.features(), $features)) };
            // SAFETY: forwarded contract; this function has the level's features.
            unsafe { super::tiles::q_gemm_chunks::<$width, Self, K, P, R, SRC, ACC>(pass, i0) }
        }
    };
}

pub(crate) mod avx2;
pub(crate) mod avx512;
pub(crate) mod kquant_search;
pub(crate) mod narrow;
pub(crate) mod offset_quant;
pub(crate) mod panel_rows;
pub(crate) mod simd;
pub(crate) mod stream;
pub(crate) mod tiles;

pub(crate) use crate::F16_KC;

/// Batched VNNI tiles (both widths), batches of more than this many rows:
/// the first row group of each K pass keeps what it derives from the panel
/// (the split Q4_0 nibbles, the f16 scales widened to f32) in an L1 buffer,
/// and the other row groups read them there, Q4_0 codes as Q8_0 codes are
/// read. Measured, 1 thread, 4096x4096 / 14336x4096 / 4096x14336: Q4_0 M=128
/// +5-9% (AVX-512) and +10-26% (AVX-VNNI), Q8_0 M=128 +4-5% (AVX-512) and
/// +1% (AVX-VNNI); at 8-16 rows the stores cost about what they save.
pub(crate) const KEEP_ROWS: usize = 16;

/// Where a batched row group reads a block's codes and scales: from the
/// panel; from the panel, also storing what it derives to the pass's
/// buffer; from that buffer (Q8_0 codes: still from the panel); from the
/// panel that the tile's first row group has just read, so without
/// prefetches (the `vpmaddubsw` tiles; a compile-time choice, so that the
/// loop keeps no prefetch pointers in registers).
pub(crate) const FROM_PANEL: u8 = 0;
pub(crate) const PANEL_TO_KEPT: u8 = 1;
pub(crate) const FROM_KEPT: u8 = 2;
pub(crate) const FROM_PANEL_WARM: u8 = 3;

/// Bytes ahead of the current position that batch-1 kernels prefetch in each
/// panel stream (the hardware prefetchers alone leave DRAM bandwidth unused).
/// Measured on an AMD EPYC (Zen 4), 1 thread, weights from memory
/// (14336x4096): 4 KiB into L2 read Q5_0 / Q4_K / Q6_K at 43-47 GB/s
/// where 2 KiB into L1 read them at 28-37, and SmolLM2-135M decoded 1.5x
/// faster. Weights the L3 still holds (a 4096x4096 matrix run again and
/// again) lose up to 10% (Q4_0, Q8_0): L1 misses that the L2 serves.
pub(crate) const GEMV_PREFETCH: usize = 4096;

/// Bytes ahead at which the AVX-512 batch-1 tiles also ask for the code
/// lines into L1 (`prefetcht0`), on top of the L2 prefetch, for the formats
/// whose lines otherwise reach L1 late: Q8_0, Q6_K and Q5_K, and Q4_0 /
/// Q4_1 where `vpdpbusd` runs them (with their prefetches late: see
/// `Dot::LATE_PREFETCH`). Measured on the AMD EPYC (Zen 4), avx512vnni, 1
/// thread, GB/s of weights: Q6_K 14336x4096 38.2-44.8 -> 45.0-48.4; Q8_0
/// 14336x4096 28.0-28.6 -> 28.3-30.1; Q5_K (`bench_report`, 3 alternated
/// runs) 14336x4096 42.3 -> 48.9, 4096x4096 46.0 -> 51.6. Q5_0 / Q5_1
/// measured level from memory and 3-6% slower from the L3 with it, Q4_K
/// and the `vpmaddubsw` Q4_0 / Q4_1 level to 4% slower, and the AVX2
/// tiles (bound by their arithmetic) 1-10% slower: they keep the L2
/// prefetch alone.
pub(crate) const L1_PREFETCH: usize = 1024;

/// Prefetches one line into L1 (`prefetcht0`); any address is allowed.
#[inline(always)]
pub(crate) fn prefetch_l1(p: *const u8) {
    // SAFETY: prefetch is a hint: it never faults and reads nothing observable.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    }
}

/// Prefetches one line into L2 (`prefetcht1`; into L1, `prefetcht0` read
/// the weights from memory slower at every distance tried, 1-8 KiB); any
/// address is allowed (no fault, no read).
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    if GEMV_PREFETCH == 0 {
        return;
    }
    // SAFETY: prefetch is a hint: it never faults and reads nothing observable.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T1 }>(p as *const i8)
    }
}

/// A kernel's scratch buffer, uninitialized: kernels write each part before
/// they read it, so release builds spend nothing on it. Builds with debug
/// assertions (the fuzz targets) fill it with 0xFF bytes (NaN as f32, code 255
/// as u8), so that a read before the write gives a wrong result that the
/// comparison with scalar shows; under Miri it stays uninitialized, and Miri
/// reports such a read itself.
#[inline(always)]
pub(crate) fn scratch<T>() -> core::mem::MaybeUninit<T> {
    let mut s = core::mem::MaybeUninit::<T>::uninit();
    if cfg!(all(debug_assertions, not(miri))) {
        // SAFETY: writes the size_of::<T>() bytes of `s`'s own storage.
        unsafe { s.as_mut_ptr().write_bytes(0xFF, 1) };
    }
    s
}

use crate::formats::{PackedBlock, WeightFormat};
use crate::load::Level;
use panel_rows::Avx512;

/// Proof that this CPU has AVX2 (and AVX).
#[derive(Clone, Copy)]
pub(crate) struct Avx2(());

/// The explicit-SIMD quantizers a load level runs, as proof of their
/// features.
#[derive(Clone, Copy)]
pub(crate) enum QuantSimd {
    Avx512(Avx512),
    Avx2(Avx2),
}

impl QuantSimd {
    /// The quantizers of the clones of `level` (none for the baseline),
    /// when this CPU has their features.
    pub(crate) fn of(level: Level) -> Option<QuantSimd> {
        use std::arch::is_x86_feature_detected as has;
        match level {
            Level::Avx512 => Avx512::detect().map(QuantSimd::Avx512),
            Level::Avx2 => (has!("avx2") && has!("avx")).then_some(QuantSimd::Avx2(Avx2(()))),
            Level::Baseline => None,
        }
    }
}

/// Quantizes `x` into `out` (llama.cpp's reference bytes) with an
/// explicit-SIMD quantizer of `t`'s level when there is one for `B`
/// (k-quants, Q8_0 on AVX-512, Q4_0, Q5_0) and returns true; returns false,
/// writing nothing, otherwise. Panics unless `x.len() == out.len() *
/// B::VALUES`.
#[inline(always)]
pub(crate) fn quantize_blocks<B: PackedBlock>(t: QuantSimd, x: &[f32], out: &mut [B]) -> bool {
    if kquant_search::quantize_blocks(t, x, out) {
        return true;
    }
    match B::FORMAT {
        WeightFormat::Q4_0 => offset_quant::quantize_q4_0(t, x, bytemuck::cast_slice_mut(out)),
        WeightFormat::Q5_0 => offset_quant::quantize_q5_0(t, x, bytemuck::cast_slice_mut(out)),
        WeightFormat::Q8_0 => {
            return offset_quant::quantize_q8_0(t, x, bytemuck::cast_slice_mut(out))
        }
        _ => return false,
    }
    true
}
