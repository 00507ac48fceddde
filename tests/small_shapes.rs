//! Every ISA against scalar on small shapes that still reach each tile edge
//! of the kernels, cheap enough to run under Miri as well (`.ci/miri.sh`).
//! Miri checks the kernels' unsafe code as it runs it: loads and stores
//! outside their buffers or misaligned for their instruction, reads of
//! uninitialized scratch (the kept nibbles, scales and f32 weights), use of
//! dangling or mis-derived pointers.
//!
//! Miri emulates the SSE / AVX2 / AVX-VNNI intrinsics but not the 512-bit
//! ones, so under Miri the AVX-512 levels are not built into the emulated CPU
//! and show up as SKIPPED (natively they run here like every other level).
//! Weights are made from f16 bit patterns: Miri has no F16C `vcvtps2ph`,
//! which the f32 -> f16 conversion uses when F16C is enabled at compile time.

mod common;

use blockq::kernels::formats::{FloatElem, PackedBlock};
use blockq::kernels::match_format;
use blockq::{Isa, QuantType, QuantizedLinear};
use common::{assert_same_bits, compare_layer, isas_under_test, values};
use half::f16;

/// xorshift64: the weights' codes and f16 bit patterns.
fn bits(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

/// A finite f16 of either sign with magnitude in [2^-7, 2^-3).
fn half_from(v: u64) -> f16 {
    f16::from_bits(0x2000 | (v as u16 & 0x8FFF))
}

fn layer(qt: QuantType, k: usize, n: usize, bias: bool) -> QuantizedLinear {
    let mut r = bits((k * 1000 + n) as u64);
    let b = values(k as u64, n, 0.5);
    let b = bias.then_some(&b[..]);
    // Random codes and finite scales (minimums) of every block format; f16
    // values for the float formats.
    match_format!(
        qt,
        B => {
            let w: Vec<B> = (0..n * k.div_ceil(B::VALUES))
                .map(|_| {
                    let scales = [half_from(r()), half_from(r())];
                    let groups: Vec<[u8; 4]> = (0..B::GROUPS + B::SCALE_GROUPS).map(|_| r().to_le_bytes()[..4].try_into().unwrap()).collect();
                    B::from_packed(scales, |c| groups[c])
                })
                .collect();
            QuantizedLinear::from_blocks(&w, b, k, n).unwrap()
        },
        E => {
            // Bit patterns of finite values in [2^-7, 2^-3) of either sign,
            // made without a float conversion (see the module docs).
            let w: Vec<E> = (0..n * k)
                .map(|_| {
                    let v = r();
                    let bytes = match E::FORMAT {
                        QuantType::F16 => half_from(v).to_bits().to_le_bytes().to_vec(),
                        QuantType::BF16 => (0x3C00 | (v as u16 & 0x81FF)).to_le_bytes().to_vec(),
                        _ => (0x3C00_0000 | (v as u32 & 0x81FF_FFFF)).to_le_bytes().to_vec(),
                    };
                    assert_eq!(bytes.len(), core::mem::size_of::<E>());
                    bytemuck::pod_read_unaligned(&bytes)
                })
                .collect();
            QuantizedLinear::from_floats(&w, b, k, n).unwrap()
        },
    )
}

/// The formats to run: all, or with `BLOCKQ_TEST_SHARD=i/n` those whose
/// index in `QuantType::ALL` is `i` mod `n` (`.ci/miri.sh` runs the shards
/// in parallel Miri processes).
fn formats() -> Vec<QuantType> {
    let Ok(shard) = std::env::var("BLOCKQ_TEST_SHARD") else {
        return QuantType::ALL.to_vec();
    };
    let parsed = shard
        .split_once('/')
        .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
    let Some((i, n)) = parsed.filter(|&(i, n)| i < n) else {
        panic!("BLOCKQ_TEST_SHARD={shard:?}: expected i/n with i < n");
    };
    QuantType::ALL.into_iter().skip(i).step_by(n).collect()
}

/// Shapes per format family as (K, N, batches). K: a tail block, and (block
/// formats) a second 16-block pass of the batched VNNI tiles, (floats) a
/// second 128-step chunk. N: a panel pair with a partial second panel, and
/// a pair plus one panel. Batches: batch 1, the two- and three-row float and
/// maddubs paths, row groups of 4-6 with a partial last group, and (17) the
/// first row group keeping what it derives for the others. Few enough
/// multiply-adds for Miri (12-14 minutes of one core for all eight formats).
const BLOCK_SHAPES: &[(usize, usize, &[usize])] = &[
    (33, 17, &[1, 2, 3, 7, 17]),
    (33, 33, &[1, 2, 3, 7, 17]),
    (520, 17, &[2, 17]),
];
const FLOAT_SHAPES: &[(usize, usize, &[usize])] = &[
    (33, 17, &[1, 2, 3, 7, 17]),
    (33, 33, &[1, 2, 3, 7, 17]),
    (130, 17, &[2, 7, 17]),
];

#[test]
fn every_isa_matches_scalar_on_small_edge_shapes() {
    let isas = isas_under_test();
    let mut cases = 0;
    for qt in formats() {
        let shapes = if qt.is_block_quantized() {
            BLOCK_SHAPES
        } else {
            FLOAT_SHAPES
        };
        for (j, &(k, n, batches)) in shapes.iter().enumerate() {
            let l = layer(qt, k, n, j % 2 == 1);
            for &m in batches {
                let x = values((k + n + m) as u64, m * k, 2.0);
                compare(&l, &x, m, &isas, &format!("{qt} k={k} n={n} m={m}"));
                cases += 1;
            }
        }
    }
    let names: Vec<String> = formats().iter().map(|f| f.to_string()).collect();
    let reference = if cfg!(miri) {
        "scalar at batch 1, else the first ISA"
    } else {
        "scalar"
    };
    for isa in &isas {
        eprintln!(
            "isa {isa}: {cases} small cases equal to {reference} ({})",
            names.join(" ")
        );
    }
}

/// [`compare_layer`], except under Miri for batches of more than one row:
/// there every ISA is compared with the first. Miri runs the scalar kernel
/// statement by statement, several times slower than it emulates the SIMD
/// tiles' intrinsics (a Q6_K shard: 179 s with scalar alone, 225 s with
/// scalar, AVX2 and AVX-VNNI), so it runs only at batch 1 there; natively
/// every case is compared with scalar.
fn compare(l: &QuantizedLinear, x: &[f32], m: usize, isas: &[Isa], what: &str) {
    match isas {
        [first, rest @ ..] if cfg!(miri) && m > 1 => {
            let want = l.clone().with_isa(*first).unwrap().forward_f32(x, m);
            for &isa in rest {
                let got = l.clone().with_isa(isa).unwrap().forward_f32(x, m);
                assert_same_bits(&got, &want, &format!("{isa} vs {first}: {what}"));
            }
        }
        _ => compare_layer(l, x, m, isas, what),
    }
}

/// A batch past one 128-row tile call, through `forward_into` (under Miri
/// compared with the first ISA, as in [`compare`]).
#[test]
fn every_isa_matches_scalar_past_one_tile_of_rows() {
    let isas = isas_under_test();
    let (k, n, m) = (8, 17, 130);
    let reference = match isas.first() {
        Some(&first) if cfg!(miri) => first,
        _ => Isa::Scalar,
    };
    for qt in formats() {
        let l = layer(qt, k, n, true);
        let x = values(7, m * k, 1.0);
        let mut want = vec![0.0; m * n];
        let base = l.clone().with_isa(reference).unwrap();
        base.forward_into(&x, m, &mut want).unwrap();
        for &isa in isas.iter().filter(|&&i| i != reference) {
            let mut got = vec![f32::NAN; m * n];
            let li = l.clone().with_isa(isa).unwrap();
            li.forward_into(&x, m, &mut got).unwrap();
            assert_same_bits(&got, &want, &format!("{isa} vs {reference}: {qt} m={m}"));
        }
    }
}
