//! Writes the committed seed corpus, `fuzz/corpus/<target>/<name>`: a few small
//! inputs per target that reach the interesting cases directly (extreme codes,
//! NaN/Inf/subnormal inputs, tile edges, bad shapes, huge dimensions).
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds` (from the
//! repository root) rewrites the files; the layouts are those read by the
//! targets through `blockq_fuzz::Src`, written with `blockq_fuzz::Enc`.

use blockq::kernels::formats::{FloatElem, PackedBlock};
use blockq::kernels::match_format;
use blockq::QuantType;
use blockq_fuzz::{float_limit, Enc, LAYER_KINDS};
use half::f16;
use std::path::Path;

/// Index of `qt` in `QuantType::ALL` (the format byte of `gguf_bytes`, and
/// the raw-weights layer kind of `read_layer`).
fn index(qt: QuantType) -> u8 {
    QuantType::ALL.iter().position(|&f| f == qt).unwrap() as u8
}

/// `read_layer`'s kind for f32 values quantized by the layer to `qt`.
fn from_f32_kind(qt: QuantType) -> u8 {
    (QuantType::COUNT as u8 + index(qt)) % LAYER_KINDS as u8
}

/// Lower-case file-name form of a format name.
fn lower(qt: QuantType) -> String {
    qt.name().to_lowercase()
}

/// Extreme stored code bytes (unsigned codes 0x00 / 0xFF / 0x0F / 0xF0: Q8_0
/// codes -128 / 127, Q4 nibbles 0 and 15, Q5 high bits all set, none, mixed).
const EXTREME: [u8; 4] = [0x00, 0xFF, 0x0F, 0xF0];

/// One raw block in the layout `blockq_fuzz::raw_block` reads: the format's
/// scales (`d`, then `m` if it has one), then its lane groups of `codes`.
fn raw_block(qt: QuantType, scales: [u16; 2], codes: &[u8]) -> Vec<u8> {
    match_format!(
        qt,
        B => {
            let mut v = Vec::new();
            for d in &scales[..B::SCALES] {
                v.extend_from_slice(&d.to_le_bytes());
            }
            v.extend(codes.iter().copied().cycle().take((B::GROUPS + B::SCALE_GROUPS) * 4));
            v
        },
        E => unreachable!("{qt} is not a block format"),
    )
}

/// One GGUF block of the block format `qt`, with these scales and code bytes.
fn gguf_block(qt: QuantType, scales: [u16; 2], codes: &[u8]) -> Vec<u8> {
    match_format!(
        qt,
        B => {
            let g = |c: usize| -> [u8; 4] { core::array::from_fn(|j| codes[(4 * c + j) % codes.len()]) };
            let b = B::from_packed(scales.map(f16::from_bits), g);
            bytemuck::bytes_of(&b).to_vec()
        },
        E => unreachable!("{qt} is not a block format"),
    )
}

/// GGUF bytes (little-endian) of the float format `qt` for the values `v`.
fn gguf_floats(qt: QuantType, v: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; qt.row_bytes(v.len())];
    qt.quantize_to_bytes(v, &mut out);
    out
}

/// Scales per block of the block format `qt` (2 with a minimum).
fn scale_count(qt: QuantType) -> usize {
    match_format!(qt, B => B::SCALES, E => unreachable!("{qt} is not a block format"))
}

/// The largest finite value of the float format `qt`, as f32.
fn float_max(qt: QuantType) -> f32 {
    match_format!(
        qt,
        B => unreachable!("{qt} is not a float format"),
        E => E::from_f32_le(float_limit::<E>()).le_to_f32(),
    )
}

/// Index of `v` in `SPECIALS`.
fn sp(v: f32) -> u8 {
    blockq_fuzz::SPECIALS
        .iter()
        .position(|s| s.to_bits() == v.to_bits())
        .expect("a special value") as u8
}

fn write(target: &str, name: &str, e: Enc) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), &e.0).unwrap();
    println!("{target}/{name}: {} bytes", e.0.len());
}

/// `quantize`'s misuse byte: activations for the block format `qt`, and
/// `case` (`% 8`: 0-3 a bad shape, 4 a float weight format, 5-7 none).
fn misuse(qt: QuantType, case: u8) -> u8 {
    let pick = QuantType::ALL
        .iter()
        .filter(|f| f.is_block_quantized())
        .position(|&f| f == qt)
        .expect("a block format") as u8;
    pick << 3 | case
}

fn quantize() {
    // Header: fill, k (u16, % 1100 + 1), rows (% 8 + 1), misuse (see
    // `misuse`), flags (bit 0 bias, bit 1 bias one too long), values,
    // [bias values]. Every seed runs every format's quantizer and layer.
    let specials: Vec<u8> = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        f32::from_bits(1),
        f32::from_bits(0x807F_FFFF),
        f32::MIN_POSITIVE,
        f32::from_bits(7 << 23),
        f32::from_bits((7 << 23) - 1),
        f32::MAX,
        65520.0,
        127.5,
    ]
    .iter()
    .map(|&v| sp(v))
    .collect();
    // One special per 32-block (the rest of each block 1.0), then a block of
    // all specials; rows of 100 so blocks have tails of 4.
    let mut idx = Vec::new();
    for &s in &specials {
        idx.push(s);
        idx.extend([sp(1.0); 32]);
    }
    idx.extend(&specials);
    let rows = idx.len().div_ceil(100);
    idx.resize(rows * 100, sp(-0.5));
    write(
        "quantize",
        "specials_k100",
        Enc::new(0)
            .u16(99)
            .u8(rows as u8 - 1)
            .u8(misuse(QuantType::Q8_0, 6))
            .u8(1)
            .special_values(0.0, &idx)
            .special_values(0.0, &vec![sp(1.0); rows]),
    );
    // Ties: amax 127 gives id = 1, so x.5 values round half to even.
    let ties: Vec<u8> = [127.0, 0.5, -0.5, 1.5, -2.5, 63.5, 3.0, -7.0]
        .iter()
        .map(|&v| sp(v))
        .cycle()
        .take(64)
        .collect();
    for qt in [QuantType::Q4_0, QuantType::Q4_1] {
        write(
            "quantize",
            &format!("ties_k64_{}", lower(qt)),
            Enc::new(0)
                .u16(63)
                .u8(0)
                .u8(misuse(qt, 6))
                .u8(0)
                .special_values(0.0, &ties),
        );
    }
    // Raw bit patterns, length 1 (a block that is almost all padding), huge values.
    write(
        "quantize",
        "raw_k1_rows8",
        Enc::new(0)
            .u16(0)
            .u8(7)
            .u8(misuse(QuantType::Q5_0, 5))
            .u8(3)
            .raw_values(&[
                1e30,
                -3.4e38,
                f32::from_bits(0x7F80_0001),
                5e-39,
                -0.0,
                70000.0,
                2.5,
                -1e-45,
            ]),
    );
    // Finite rows at the formats' limits: row 0 has the minimum -65520 (the
    // Q4_1 / Q5_1 minimum and the F16 value overflow f16, the other block
    // scales do not), row 1 the largest value with a finite bf16 and then one
    // that rounds to bf16 infinity, row 2 65504 and a bf16 tie.
    let limits: [[f32; 4]; 3] = [
        [-65520.0, 1.0, -0.5, 3.0],
        [
            f32::from_bits(0x7F7F_7FFF),
            -1.0,
            f32::from_bits(0x7F7F_8000),
            0.5,
        ],
        [65504.0, f32::from_bits(0x3F80_8000), -7.0, 1.5],
    ];
    for (name, qt, rows) in [
        ("overflow_min_k40", QuantType::Q5_1, &limits[..]),
        ("overflow_bf16_k40", QuantType::Q4_1, &limits[1..]),
    ] {
        let idx: Vec<u8> = rows
            .iter()
            .flat_map(|r| r.iter().cycle().take(40).map(|&v| sp(v)))
            .collect();
        write(
            "quantize",
            name,
            Enc::new(0)
                .u16(39)
                .u8(rows.len() as u8 - 1)
                .u8(misuse(qt, 7))
                .u8(0)
                .special_values(0.0, &idx),
        );
    }
    // Bad shapes: k = 0, block count off by one, a float format (PRNG values).
    write(
        "quantize",
        "misuse_k0",
        Enc::new(2)
            .u16(99)
            .u8(2)
            .u8(misuse(QuantType::Q8_0, 0))
            .u8(0),
    );
    write(
        "quantize",
        "misuse_blocks",
        Enc::new(2)
            .u16(1099)
            .u8(1)
            .u8(misuse(QuantType::Q5_1, 1))
            .u8(0),
    );
    write(
        "quantize",
        "misuse_float",
        Enc::new(2)
            .u16(70)
            .u8(3)
            .u8(misuse(QuantType::Q4_0, 4))
            .u8(0),
    );
}

fn matmul() {
    // Header: fill, kind (`read_layer`), size class (% 4), k (u16), n (u8),
    // m (u8), flags (bit 0 bias), split; then input values, [bias values],
    // weights.
    let x = |k: usize, m: usize| -> Vec<i8> {
        (0..k * m)
            .map(|i| [127, -127, 5, -128, 0, 64][i % 6])
            .collect()
    };
    let header = |e: Enc, kind: u8, class: u8, (k, n, m): (usize, usize, usize), flags: u8| {
        e.u8(kind)
            .u8(class)
            .u16(k as u16 - 1)
            .u8(n as u8 - 1)
            .u8(m as u8 - 1)
            .u8(flags)
            .u8(2)
    };
    // (k, n, m) and the size class that allows them.
    let shapes = [
        ((97, 35, 6), 3),
        ((130, 17, 3), 2),
        ((64, 16, 9), 0),
        ((45, 33, 2), 1),
        ((200, 5, 7), 3),
    ];
    // Raw blocks of every block format with extreme codes, scale 1 (or a
    // negative one), minimum -0.5 (or the largest f16): the input ends with
    // one block, which the fill repeats over the whole matrix.
    let blocks = QuantType::ALL
        .into_iter()
        .filter(|f| f.is_block_quantized());
    for (i, qt) in blocks.enumerate() {
        let (shape, class) = shapes[i % shapes.len()];
        let scales = if i % 2 == 0 {
            [0x3C00, 0xB800]
        } else {
            [0xBE00, 0x7BFF]
        };
        let block = raw_block(qt, scales, &EXTREME);
        let mut e = header(
            Enc::cycle(block.len() as u8),
            index(qt),
            class,
            shape,
            (i % 2) as u8,
        )
        .i8_values(0.3, &x(shape.0, shape.2));
        if i % 2 == 1 {
            e = e.i8_values(0.25, &vec![3; shape.1]);
        }
        write(
            "matmul",
            &format!("raw_{}_extreme", lower(qt)),
            e.bytes(&block),
        );
    }
    // Raw float weights (PRNG bits, made finite) with special inputs (NaN,
    // Inf, subnormals): row 0 cycles through every special, row 1 only
    // finite ones.
    let floats = QuantType::ALL
        .into_iter()
        .filter(|f| !f.is_block_quantized());
    for qt in floats {
        let (k, m) = (31, 2);
        let count = blockq_fuzz::SPECIALS.len() as u8 + 4;
        let finite: Vec<u8> = (0..count)
            .filter(|&i| blockq_fuzz::special(i, 0.5).is_finite())
            .collect();
        let idx: Vec<u8> = (0..k * m)
            .map(|i| {
                if i < k {
                    (i * 5 % count as usize) as u8
                } else {
                    finite[i * 7 % finite.len()]
                }
            })
            .collect();
        write(
            "matmul",
            &format!("raw_{}_specials", lower(qt)),
            header(Enc::new(2), index(qt), 1, (k, 17, m), 0).special_values(0.5, &idx),
        );
    }
    // Every format quantized by the layer from small f32 weights, with a
    // bias; rows alone and split batches.
    for (i, qt) in QuantType::ALL.into_iter().enumerate() {
        let (k, n, m) = [(33, 15, 5), (40, 18, 4)][i % 2];
        let w: Vec<i8> = (0..k * n)
            .map(|j| ((j + i) * 7 % 255) as u8 as i8)
            .collect();
        write(
            "matmul",
            &format!("{}_from_f32", lower(qt)),
            header(Enc::new(0), from_f32_kind(qt), 0, (k, n, m), 1)
                .i8_values(0.3, &x(k, m))
                .i8_values(0.25, &vec![3; n])
                .i8_values(0.01 + i as f32, &w),
        );
    }
}

fn gguf_bytes() {
    // Header: fill, format (index in QuantType::ALL), dims byte (>= 0xF0: two
    // u64, else u16 k % 400 and u8 n % 48), length delta (i8 % 4, ±3 = exact),
    // flags (bit 0 make finite, bits 1-2 bias mode), [bias], bytes.
    let header = |qt: QuantType, k: u16, n: u8, flags: u8| {
        Enc::new(0).u8(index(qt)).u8(0).u16(k).u8(n).u8(0).u8(flags)
    };
    for (i, qt) in QuantType::ALL.into_iter().enumerate() {
        let (k, n) = [(40u16, 3u8), (32, 2), (70, 1)][i % 3];
        let nb = (k as usize).div_ceil(qt.block_size());
        // Valid: extreme codes, f16 subnormal / negative / largest scales and
        // minimums; float values -0.0, subnormals, the largest finite.
        let mut valid = Vec::new();
        for r in 0..n as usize {
            for b in 0..nb {
                let j = r * nb + b;
                if qt.is_block_quantized() {
                    let scales = [[0x3C00, 0x8000], [0x0001, 0x7BFF], [0xC000, 0xFBFF]][j % 3];
                    let codes: Vec<u8> = EXTREME.iter().map(|&c| c ^ (j as u8 * 17)).collect();
                    valid.extend(gguf_block(qt, scales, &codes));
                } else {
                    let max = float_max(qt);
                    let v = [-0.0, f32::from_bits(1), max, -max, 1.5, f32::MIN_POSITIVE][j % 6];
                    valid.extend(gguf_floats(qt, &[v]));
                }
            }
        }
        let name = lower(qt);
        let bias = if i % 2 == 0 { 4 } else { 0 };
        let mut e = header(qt, k, n, bias);
        if bias != 0 {
            e = e.i8_values(1.0, &[1, -2, 3][..n as usize]);
        }
        write("gguf_bytes", &format!("{name}_valid"), e.bytes(&valid));
        // NaN/Inf: the minimum (or the scale, without one; or a value) of
        // block 1 of row 1, every scale of row 2. As they are, and made
        // finite for Q5_1.
        let (k, n) = (k.max(33), 3);
        let mut bad = Vec::new();
        let nb = (k as usize).div_ceil(qt.block_size());
        for r in 0..n as usize {
            for b in 0..nb {
                if qt.is_block_quantized() {
                    let mut s = [0x3C00, 0xB800];
                    match (r, b) {
                        (1, 1) => s[scale_count(qt) - 1] = 0x7E00,
                        (2, _) => s = [0x7C00, 0xFC00],
                        _ => {}
                    }
                    bad.extend(gguf_block(qt, s, &EXTREME));
                } else {
                    let v = match (r, b) {
                        (1, 5) => f32::NAN,
                        (2, _) => f32::NEG_INFINITY,
                        _ => b as f32 - 3.5,
                    };
                    bad.extend(gguf_floats(qt, &[v]));
                }
            }
        }
        let flags = u8::from(qt == QuantType::Q5_1);
        write(
            "gguf_bytes",
            &format!("{name}_nonfinite"),
            header(qt, k, n, flags).bytes(&bad),
        );
    }
    // Zero and overflowing dimensions.
    write(
        "gguf_bytes",
        "zero_dims",
        Enc::new(0).u8(0).u8(0).u16(0).u8(5),
    );
    write(
        "gguf_bytes",
        "huge_dims",
        Enc::new(0)
            .u8(index(QuantType::Q4_0))
            .u8(0xFF)
            .u64(1 << 40)
            .u64(1 << 30)
            .u8(0)
            .u8(6),
    );
}

fn forward_into() {
    // Header: fill, kind (`read_layer`), k (u16 % 200 + 1), n (u8 % 40 + 1),
    // flags (bit 0 bias, bit 1 arbitrary stored scales and values), batch
    // byte (>= 0xF0: a u64 follows, else % 24), input delta, output delta
    // (i8 % 4; ±3 = exact), then input values, [bias], weights (PRNG here).
    let good = |kind: u8, flags: u8, batch: u8| {
        Enc::new(2)
            .u8(kind)
            .u16(44)
            .u8(20)
            .u8(flags)
            .u8(batch)
            .u8(0)
            .u8(0)
    };
    // Stored weights of every format: finite, and (PRNG scales: some NaN/Inf)
    // arbitrary.
    for (i, qt) in QuantType::ALL.into_iter().enumerate() {
        let name = lower(qt);
        write(
            "forward_into",
            &format!("{name}_good_shapes"),
            good(index(qt), 1, 1 + i as u8 % 4),
        );
        write(
            "forward_into",
            &format!("{name}_stored_nonfinite"),
            good(index(qt), 2 | (i as u8 & 1), 2),
        );
    }
    write(
        "forward_into",
        "batch_zero",
        good(from_f32_kind(QuantType::Q4_1), 1, 0),
    );
    write(
        "forward_into",
        "input_too_short",
        Enc::new(2)
            .u8(from_f32_kind(QuantType::F32))
            .u16(7)
            .u8(3)
            .u8(0)
            .u8(2)
            .u8(0xFF)
            .u8(0),
    );
    write(
        "forward_into",
        "output_too_long",
        Enc::new(2)
            .u8(from_f32_kind(QuantType::BF16))
            .u16(7)
            .u8(3)
            .u8(0)
            .u8(2)
            .u8(0)
            .u8(1),
    );
    write(
        "forward_into",
        "huge_batch",
        Enc::new(0)
            .u8(index(QuantType::Q5_0))
            .u16(31)
            .u8(15)
            .u8(0)
            .u8(0xF0)
            .u64(1 << 58)
            .u8(0)
            .u8(0),
    );
}

fn main() {
    quantize();
    matmul();
    gguf_bytes();
    forward_into();
}
