//! x86-64 kernels: AVX2 (+ AVX-VNNI) on 256-bit registers and AVX-512 (+ VNNI)
//! on 512-bit registers. Each file instantiates one algorithm per register width
//! for its two integer-dot variants, so the levels differ only where the
//! instructions do.

pub(crate) mod avx2;
pub(crate) mod avx512;

/// k-steps of F16 weights widened to f32 per chunk in batched float kernels
/// (16 rows x 128 steps x 4 bytes = 8 KiB of stack, L1-resident).
pub(crate) const F16_KC: usize = 128;
