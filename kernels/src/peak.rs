//! Machine limits for benchmark reports, measured rather than assumed.
//!
//! - [`int8_peak_gops`]: register-only loops of the integer dot instruction an
//!   ISA's Q8_0 / Q4_0 kernels use (`vpdpbusd` for the VNNI levels,
//!   `vpmaddubsw` + `vpmaddwd` + `vpaddd` for AVX2 / AVX-512 BW).
//! - [`f32_fma_peak_gflops`]: register-only `vfmadd` loops at the ISA's vector
//!   width (the F16 / F32 kernels' inner operation).
//! - [`read_checksum`]: a vectorized read of a buffer, for memory bandwidth.
//! - [`pin_thread`]: keeps a benchmark pool's worker on one CPU.
//!
//! Each loop keeps many independent accumulators so it is bound by instruction
//! throughput, not latency. Operations count 2 per multiply-add (a `vpdpbusd`
//! on 512 bits is 64 multiply-adds = 128 ops). The functions are safe: they
//! return `None` when the CPU (or this build's architecture) lacks the ISA.

use crate::Isa;

/// Times `run(iters)` after a short warm-up (which also brings the core to
/// its wide-vector clock), and converts to G-ops/s.
#[cfg(target_arch = "x86_64")]
fn rate(iters: u64, ops_per_iter: u64, run: impl Fn(u64) -> u64) -> f64 {
    use std::hint::black_box;
    let iters = iters.max(1);
    black_box(run(black_box(iters / 8 + 1)));
    let t = std::time::Instant::now();
    black_box(run(black_box(iters)));
    let secs = t.elapsed().as_secs_f64().max(1e-9);
    (iters * ops_per_iter) as f64 / secs / 1e9
}

/// Peak int8 dot-product throughput of one core for `isa`'s instruction, in
/// G-ops/s (2 ops per 8-bit multiply-add), over `iters` loop iterations.
///
/// `None` for ISAs without an x86 integer-dot loop here (scalar, NEON levels)
/// or that this CPU lacks. About 10^7 iterations take a few tens of ms.
pub fn int8_peak_gops(isa: Isa, iters: u64) -> Option<f64> {
    if !isa.is_supported() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let ops = |acc: usize, macs_per_instr: u64| acc as u64 * macs_per_instr * 2;
        match isa {
            Isa::Avx2 => Some(rate(iters, ops(x86::MADD_ACC, 32), |n| {
                // SAFETY: `is_supported` checked avx2 (and fma, f16c) above.
                unsafe { x86::maddubs_ymm(n) }
            })),
            Isa::AvxVnni => Some(rate(iters, ops(x86::DOT_ACC, 32), |n| {
                // SAFETY: `is_supported` checked avx2 and avxvnni above.
                unsafe { x86::dpbusd_ymm(n) }
            })),
            Isa::Avx512 => Some(rate(iters, ops(x86::MADD_ACC, 64), |n| {
                // SAFETY: `is_supported` checked avx512f and avx512bw above.
                unsafe { x86::maddubs_zmm(n) }
            })),
            Isa::Avx512Vnni => Some(rate(iters, ops(x86::DOT_ACC, 64), |n| {
                // SAFETY: `is_supported` checked avx512f, avx512bw, avx512vnni above.
                unsafe { x86::dpbusd_zmm(n) }
            })),
            _ => None,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = iters;
        None
    }
}

/// Peak f32 FMA throughput of one core at `isa`'s vector width (256 bits for
/// AVX2 / AVX-VNNI, 512 bits for the AVX-512 levels), in GFLOP/s (2 flops per
/// lane and FMA), over `iters` loop iterations. `None` as for [`int8_peak_gops`].
pub fn f32_fma_peak_gflops(isa: Isa, iters: u64) -> Option<f64> {
    if !isa.is_supported() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let ops = |lanes: u64| x86::FMA_ACC as u64 * lanes * 2;
        match isa {
            Isa::Avx2 | Isa::AvxVnni => Some(rate(iters, ops(8), |n| {
                // SAFETY: both levels imply avx2 + fma, checked above.
                unsafe { x86::fma_ymm(n) }
            })),
            Isa::Avx512 | Isa::Avx512Vnni => Some(rate(iters, ops(16), |n| {
                // SAFETY: both levels imply avx512f + fma, checked above.
                unsafe { x86::fma_zmm(n) }
            })),
            _ => None,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = iters;
        None
    }
}

/// Wrapping sum of `data` read as little-endian `u64` words (the last word
/// zero-padded), using the widest vector loads this CPU has, in four
/// interleaved streams. Its purpose is to read every byte as fast as the memory
/// system allows; time it over a buffer to get read bandwidth. The result is
/// the same on every path.
pub fn read_checksum(data: &[u8]) -> u64 {
    let words = data.len() / 8;
    let (body, tail) = data.split_at(words * 8);
    let (mut sum, done) = vector_sum(body);
    for w in body[done..].chunks_exact(8) {
        sum = sum.wrapping_add(u64::from_le_bytes(w.try_into().unwrap()));
    }
    if !tail.is_empty() {
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        sum = sum.wrapping_add(u64::from_le_bytes(last));
    }
    sum
}

/// Pins the calling thread to the `i`-th CPU (modulo their count) of those
/// the process may run on; false where that is not possible (not Linux, or
/// the call failed), and nothing changes. Benchmarks pin worker `i` of each
/// rayon pool to CPU `i`: with two pools (1 thread, then N) on a small
/// machine, Linux at times runs two workers of the N-thread pool on one
/// CPU for a whole run after the other pool's worker ran (seen on a 2-core
/// VM: half of the 2-thread runs of a 4 ms conversion took twice as long
/// when they alternated with a 1-thread pool's, none when pinned).
pub fn pin_thread(i: usize) -> bool {
    #[cfg(target_os = "linux")]
    {
        let size = core::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: `cpu_set_t` is plain bits, all-zero is the empty set.
        let mut allowed: libc::cpu_set_t = unsafe { core::mem::zeroed() };
        // SAFETY: `allowed` is a writable set of `size` bytes; pid 0 is this thread.
        if unsafe { libc::sched_getaffinity(0, size, &mut allowed) } != 0 {
            return false;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `c` is below CPU_SETSIZE, the set's size in bits.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &allowed) })
            .collect();
        if cpus.is_empty() {
            return false;
        }
        // SAFETY: as above, the empty set.
        let mut one: libc::cpu_set_t = unsafe { core::mem::zeroed() };
        // SAFETY: the CPU index comes from `cpus`, below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpus[i % cpus.len()], &mut one) };
        // SAFETY: `one` is a valid set of `size` bytes; pid 0 is this thread.
        unsafe { libc::sched_setaffinity(0, size, &one) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = i;
        false
    }
}

/// Sum of a prefix of `body` (whole u64 words) with the widest vector loads
/// available, and the length of that prefix.
#[cfg(target_arch = "x86_64")]
fn vector_sum(body: &[u8]) -> (u64, usize) {
    if Isa::Avx512.is_supported() {
        // SAFETY: avx512f checked; the function reads only `body`.
        unsafe { x86::sum_words_zmm(body) }
    } else if Isa::Avx2.is_supported() {
        // SAFETY: avx2 checked; the function reads only `body`.
        unsafe { x86::sum_words_ymm(body) }
    } else {
        (0, 0)
    }
}

/// No vector path on this architecture: the caller's word loop does it all.
#[cfg(not(target_arch = "x86_64"))]
fn vector_sum(_body: &[u8]) -> (u64, usize) {
    (0, 0)
}

/// The peak loops, written once over a register width (the kernels' `Width`)
/// and instantiated per level by thin `#[target_feature]` entry points.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use crate::x86::avx2::{VnniVex, Ymm};
    use crate::x86::avx512::{Vnni512, Zmm};
    use crate::x86::simd::{Vnni, Width};
    use std::hint::black_box;

    /// Independent accumulators of the `vpdpbusd` loops (latency 5 x 2 ports).
    pub const DOT_ACC: usize = 12;
    /// Independent accumulators of the FMA loops (latency 4 x 2 ports).
    pub const FMA_ACC: usize = 12;
    /// Accumulators of the `vpmaddubsw` + `vpmaddwd` + `vpaddd` loops: only the
    /// add is on the carried chain, and 16 ymm registers must hold the rest.
    pub const MADD_ACC: usize = 8;

    // `W::pin_*` (an empty `asm!`) makes the compiler treat a register's value
    // as unknown and changed, at no run-time cost: without it it would hoist
    // the loop-invariant products out of the loop or merge equal ones.

    /// Wrapping sum of every i32 lane of `acc`.
    #[inline(always)]
    unsafe fn sum_i32<W: Width>(acc: &[W::I]) -> u64 {
        // SAFETY: the caller's features cover W's instructions.
        unsafe {
            let mut s = W::zero_i();
            for &x in acc {
                s = W::add_i32(s, x);
            }
            W::hsum_u32(s) as u64
        }
    }

    /// `iters` x DOT_ACC `vpdpbusd`.
    #[inline(always)]
    unsafe fn dpbusd_loop<W: Width, V: Vnni<W>>(iters: u64) -> u64 {
        // SAFETY: the caller's features cover W's and V's instructions.
        unsafe {
            let a = W::splat_i8(black_box(3));
            let b = W::splat_i8(black_box(5));
            let mut acc = [W::zero_i(); DOT_ACC];
            for _ in 0..iters {
                for x in acc.iter_mut() {
                    *x = V::dpbusd(*x, a, b);
                }
                W::pin_i(&mut acc[0]);
            }
            sum_i32::<W>(&acc)
        }
    }

    /// `iters` x MADD_ACC (`vpmaddubsw` + `vpmaddwd` + `vpaddd`).
    #[inline(always)]
    unsafe fn maddubs_loop<W: Width>(iters: u64) -> u64 {
        // SAFETY: the caller's features cover W's instructions.
        unsafe {
            let mut a = W::splat_i8(black_box(3));
            let b = W::splat_i8(black_box(5));
            let mut acc = [W::zero_i(); MADD_ACC];
            for _ in 0..iters {
                for x in acc.iter_mut() {
                    // `a` becomes opaque, so each product below is computed
                    // (as the kernels compute new ones).
                    W::pin_i(&mut a);
                    *x = W::add_i32(*x, W::maddubs_pairs(a, b));
                }
            }
            sum_i32::<W>(&acc)
        }
    }

    /// `iters` x FMA_ACC `vfmadd ps`: `acc = acc * a + b` (converges, so no
    /// overflow or subnormal slows it down).
    #[inline(always)]
    unsafe fn fma_loop<W: Width>(iters: u64) -> u64 {
        // SAFETY: the caller's features cover W's instructions.
        unsafe {
            let a = W::splat_f(black_box(0.999));
            let b = W::splat_f(black_box(1e-3));
            let mut acc = [W::zero_f(); FMA_ACC];
            for _ in 0..iters {
                for x in acc.iter_mut() {
                    *x = W::fmadd(*x, a, b);
                }
                W::pin_f(&mut acc[0]);
            }
            let mut s = 0.0f32;
            for &x in &acc {
                s += W::hsum_f32(x);
            }
            s.to_bits() as u64
        }
    }

    /// Sums the first `4 * q` bytes of `data` as u64 words, `q` the largest
    /// multiple of two registers with `4 * q <= data.len()`: four streams (one
    /// per quarter) read two registers each per step, into 8 accumulators.
    /// Several streams keep more cache-line misses in flight than one, as the
    /// kernels' multi-panel loops do. Returns the sum and the bytes consumed.
    #[inline(always)]
    unsafe fn sum_words<W: Width>(data: &[u8]) -> (u64, usize) {
        let reg = W::UNIT_BYTES;
        let q = data.len() / 4 / (2 * reg) * (2 * reg);
        let p = data.as_ptr();
        // SAFETY: the caller's features cover W's instructions; every load
        // ends at (j / 2) * q + off + 2 reg <= 4 q <= data.len().
        unsafe {
            let mut acc = [W::zero_i(); 8];
            for off in (0..q).step_by(2 * reg) {
                for (j, x) in acc.iter_mut().enumerate() {
                    let at = (j / 2) * q + off + (j % 2) * reg;
                    *x = W::add_i64(*x, W::loadu_i(p.add(at)));
                }
            }
            let mut s = W::zero_i();
            for &x in &acc {
                s = W::add_i64(s, x);
            }
            (W::hsum_u64(s), 4 * q)
        }
    }

    /// `iters` x DOT_ACC `vpdpbusd zmm`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn dpbusd_zmm(iters: u64) -> u64 {
        // SAFETY: the features dpbusd_loop::<Zmm, Vnni512> needs are enabled here.
        unsafe { dpbusd_loop::<Zmm, Vnni512>(iters) }
    }

    /// `iters` x DOT_ACC `vpdpbusd ymm` (VEX, AVX-VNNI).
    #[target_feature(enable = "avx2,avxvnni")]
    pub unsafe fn dpbusd_ymm(iters: u64) -> u64 {
        // SAFETY: as above.
        unsafe { dpbusd_loop::<Ymm, VnniVex>(iters) }
    }

    /// `iters` x MADD_ACC maddubs steps on ymm.
    #[target_feature(enable = "avx2")]
    pub unsafe fn maddubs_ymm(iters: u64) -> u64 {
        // SAFETY: as above.
        unsafe { maddubs_loop::<Ymm>(iters) }
    }

    /// `iters` x MADD_ACC maddubs steps on zmm.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn maddubs_zmm(iters: u64) -> u64 {
        // SAFETY: as above.
        unsafe { maddubs_loop::<Zmm>(iters) }
    }

    /// `iters` x FMA_ACC `vfmadd ps ymm`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_ymm(iters: u64) -> u64 {
        // SAFETY: as above.
        unsafe { fma_loop::<Ymm>(iters) }
    }

    /// `iters` x FMA_ACC `vfmadd ps zmm`.
    #[target_feature(enable = "avx512f,fma")]
    pub unsafe fn fma_zmm(iters: u64) -> u64 {
        // SAFETY: as above.
        unsafe { fma_loop::<Zmm>(iters) }
    }

    /// [`sum_words`] on zmm (128 bytes per stream and step).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn sum_words_zmm(data: &[u8]) -> (u64, usize) {
        // SAFETY: as above.
        unsafe { sum_words::<Zmm>(data) }
    }

    /// [`sum_words`] on ymm (64 bytes per stream and step).
    #[target_feature(enable = "avx2")]
    pub unsafe fn sum_words_ymm(data: &[u8]) -> (u64, usize) {
        // SAFETY: as above.
        unsafe { sum_words::<Ymm>(data) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(data: &[u8]) -> u64 {
        data.chunks(8).fold(0u64, |s, w| {
            let mut b = [0u8; 8];
            b[..w.len()].copy_from_slice(w);
            s.wrapping_add(u64::from_le_bytes(b))
        })
    }

    #[test]
    fn a_pinned_thread_runs_on_one_allowed_cpu() {
        std::thread::spawn(|| {
            let ok = pin_thread(1);
            #[cfg(target_os = "linux")]
            {
                assert!(ok, "sched_setaffinity failed");
                let size = core::mem::size_of::<libc::cpu_set_t>();
                // SAFETY: as in `pin_thread`.
                let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
                // SAFETY: as in `pin_thread`.
                assert_eq!(unsafe { libc::sched_getaffinity(0, size, &mut set) }, 0);
                // SAFETY: `c` is below CPU_SETSIZE.
                let n = (0..libc::CPU_SETSIZE as usize)
                    .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
                    .count();
                assert_eq!(n, 1);
            }
            #[cfg(not(target_os = "linux"))]
            assert!(!ok);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn read_checksum_matches_naive_sum() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for start in [0, 1, 7, 64] {
            for len in [
                0, 1, 7, 8, 9, 255, 256, 511, 512, 513, 1024, 1999, 2048, 4000,
            ] {
                let s = &data[start..start + len];
                assert_eq!(read_checksum(s), naive(s), "start {start} len {len}");
                #[cfg(target_arch = "x86_64")]
                {
                    if Isa::Avx2.is_supported() {
                        // SAFETY: avx2 checked.
                        let (sum, n) = unsafe { x86::sum_words_ymm(s) };
                        assert!(n <= len && len - n < 4 * 64 + 8, "{len}: {n}");
                        assert_eq!(sum, naive(&s[..n]), "ymm start {start} len {len}");
                    }
                    if Isa::Avx512.is_supported() {
                        // SAFETY: avx512f checked.
                        let (sum, n) = unsafe { x86::sum_words_zmm(s) };
                        assert!(n <= len && len - n < 4 * 128 + 8, "{len}: {n}");
                        assert_eq!(sum, naive(&s[..n]), "zmm start {start} len {len}");
                    }
                }
            }
        }
    }

    #[test]
    fn peaks_exist_exactly_for_supported_x86_levels() {
        for isa in Isa::ALL {
            let x86_simd = matches!(
                isa,
                Isa::Avx2 | Isa::AvxVnni | Isa::Avx512 | Isa::Avx512Vnni
            );
            let expect = x86_simd && isa.is_supported();
            let int8 = int8_peak_gops(isa, 10_000);
            let fma = f32_fma_peak_gflops(isa, 10_000);
            assert_eq!(int8.is_some(), expect, "{isa} int8 {int8:?}");
            assert_eq!(fma.is_some(), expect, "{isa} fma {fma:?}");
            for v in int8.into_iter().chain(fma) {
                assert!(v.is_finite() && v > 0.0, "{isa}: {v}");
            }
        }
    }
}
