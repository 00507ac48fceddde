//! Input data shared by the examples, benches and tests (each includes this
//! file as a module), so that every program measures and checks the same
//! values.

/// Deterministic pseudo-random values (xorshift64*) in `[-scale, scale)`: the
/// same on every run and machine, so timings and errors compare across runs.
pub fn values(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let r = (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
            (r * 2.0 - 1.0) * scale
        })
        .collect()
}
