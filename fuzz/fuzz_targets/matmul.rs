//! Differential fuzzing of the matmul kernels: a layer of every format of
//! `QuantType::ALL` (raw blocks of each block format with arbitrary codes and
//! finite scales and minimums, raw values of each float format, or f32 values
//! quantized by the layer to each format; see `read_layer`), any shape (K 1..=600, N 1..=100, batch 1..=160, at most
//! `MAX_MACS` multiply-adds), any inputs (NaN, ±Inf, subnormals, -0.0). Every
//! available ISA must give the scalar bits, and every ISA must be batch
//! invariant (rows alone and sub-batches give the rows of the whole batch).
#![no_main]

use blockq_fuzz::{check_forward, read_layer, Src, MAX_MACS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut src = Src::new(data);
    let kind = src.u8();
    // Half the cases are small (fast, many tile edges), the rest up to the
    // limits; batches past 128 rows span two row tiles of the driver.
    let (kmax, nmax, mmax) = match src.u8() % 4 {
        0 | 1 => (96, 40, 13),
        2 => (600, 100, 8),
        _ => (600, 100, 160),
    };
    let k = src.u16() as usize % kmax + 1;
    let n = src.u8() as usize % nmax + 1;
    let m = (src.u8() as usize % mmax + 1).min((MAX_MACS / (n * k)).max(1));
    let flags = src.u8();
    let split = src.u8() as usize;
    let x = src.values(m * k);
    let (layer, desc) = read_layer(&mut src, kind, k, n, flags & 1 != 0);
    check_forward(&layer, &x, m, split, &desc);
});
