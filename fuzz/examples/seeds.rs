//! Writes the committed seed corpus, `fuzz/corpus/<target>/<name>`: a few small
//! inputs per target that reach the interesting cases directly (extreme codes,
//! NaN/Inf/subnormal inputs, tile edges, bad shapes, huge dimensions).
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds` (from the
//! repository root) rewrites the files; the layouts are those read by the
//! targets through `blockq_fuzz::Src`, written with `blockq_fuzz::Enc`.

use blockq_fuzz::Enc;
use std::path::Path;

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

fn quantize() {
    // Header: fill, k (u16, % 1100 + 1), rows (% 8 + 1), misuse (% 8: 0-5 one bad
    // argument, 6-7 none; bit 3: Q4_0 instead of Q8_0 activations), flags
    // (bit 0 bias, bit 1 bias one too long), values, [bias values].
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
            .u8(6)
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
    write(
        "quantize",
        "ties_k64",
        Enc::new(0)
            .u16(63)
            .u8(0)
            .u8(8 + 6)
            .u8(0)
            .special_values(0.0, &ties),
    );
    // Raw bit patterns, length 1 (a block that is almost all padding), huge values.
    write(
        "quantize",
        "raw_k1_rows8",
        Enc::new(0).u16(0).u8(7).u8(8 + 5).u8(3).raw_values(&[
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
    // Bad shapes: k = 0, then block count off by one (PRNG values).
    write(
        "quantize",
        "misuse_k0",
        Enc::new(2).u16(99).u8(2).u8(0).u8(0),
    );
    write(
        "quantize",
        "misuse_blocks",
        Enc::new(2).u16(1099).u8(1).u8(1).u8(0),
    );
}

fn matmul() {
    // Header: fill, kind (% 7), size class (% 4), k (u16), n (u8), m (u8), flags
    // (bit 0 bias), split; then input values, [bias values], weights.
    let x = |k: usize, m: usize| -> Vec<i8> {
        (0..k * m)
            .map(|i| [127, -127, 5, -128, 0, 64][i % 6])
            .collect()
    };
    // Q8_0 with codes -128/-127/127 everywhere: the input ends with one block,
    // which the fill repeats over the whole matrix.
    let (k, n, m) = (97, 35, 6);
    let q8: Vec<u8> = [0x00, 0x3C]
        .into_iter()
        .chain([0x80u8, 0x81, 0x7F].into_iter().cycle().take(32))
        .collect();
    write(
        "matmul",
        "q8_extreme_codes",
        Enc::cycle(34)
            .u8(0)
            .u8(3)
            .u16(k as u16 - 1)
            .u8(n as u8 - 1)
            .u8(m as u8 - 1)
            .u8(0)
            .u8(2)
            .i8_values(0.3, &x(k, m))
            .bytes(&q8),
    );
    // Q4_0 nibbles 0 and 15 (bytes 0x0F / 0xF0 / 0x00 / 0xFF), negative scale, bias.
    let (k, n, m) = (130, 17, 3);
    let q4: Vec<u8> = [0x00, 0xBE]
        .into_iter()
        .chain([0x0F, 0xF0, 0x00, 0xFF].into_iter().cycle().take(16))
        .collect();
    write(
        "matmul",
        "q4_extreme_nibbles",
        Enc::cycle(18)
            .u8(1)
            .u8(2)
            .u16(k as u16 - 1)
            .u8(n as u8 - 1)
            .u8(m as u8 - 1)
            .u8(1)
            .u8(1)
            .i8_values(-1.5, &x(k, m))
            .i8_values(0.25, &[3; 17])
            .bytes(&q4),
    );
    // Small Q8_0 quantized from f32, with a bias; rows alone and split batches.
    let (k, n, m) = (33, 15, 5);
    let w: Vec<i8> = (0..k * n).map(|i| (i * 7 % 255) as u8 as i8).collect();
    write(
        "matmul",
        "q8_from_f32_small",
        Enc::new(0)
            .u8(4)
            .u8(0)
            .u16(k as u16 - 1)
            .u8(n as u8 - 1)
            .u8(m as u8 - 1)
            .u8(1)
            .u8(2)
            .i8_values(0.3, &x(k, m))
            .i8_values(0.25, &[3; 15])
            .i8_values(0.01, &w),
    );
    // F16 and F32 layers with PRNG weights and special inputs (NaN, Inf, subnormals).
    for (name, kind) in [("f16_specials", 2u8), ("f32_specials", 3)] {
        let (k, m) = (31, 2);
        // Row 0 cycles through every special (NaN, ±Inf, ...), row 1 only finite ones.
        let finite: Vec<u8> = (0..36u8).filter(|i| !(12..=18).contains(i)).collect();
        let idx: Vec<u8> = (0..k * m)
            .map(|i| {
                if i < k {
                    (i * 5 % 36) as u8
                } else {
                    finite[i * 7 % finite.len()]
                }
            })
            .collect();
        write(
            "matmul",
            name,
            Enc::new(2)
                .u8(kind)
                .u8(1)
                .u16(k as u16 - 1)
                .u8(16)
                .u8(m as u8 - 1)
                .u8(0)
                .u8(1)
                .special_values(0.5, &idx),
        );
    }
}

fn gguf_bytes() {
    // Header: fill, quant type (% 4: Q8_0 Q4_0 F16 F32), dims byte (>= 0xF0: two
    // u64, else u16 k % 400 and u8 n % 48), length delta (i8 % 4, ±3 = exact),
    // flags (bit 0 make finite, bits 1-2 bias mode), [bias], bytes.
    let q8_block = |d: [u8; 2]| -> Vec<u8> {
        d.into_iter()
            .chain((0..32).map(|j| [0x80u8, 0x7F, 0x00, 0x81][j % 4]))
            .collect()
    };
    let mut q8 = Vec::new();
    for r in 0..3 {
        q8.extend(q8_block([0x00, 0x3C]));
        q8.extend(q8_block([0x01, if r == 2 { 0x80 } else { 0x00 }])); // f16 subnormals
    }
    write(
        "gguf_bytes",
        "q8_valid_k40_n3",
        Enc::new(0)
            .u8(0)
            .u8(0)
            .u16(40)
            .u8(3)
            .u8(0)
            .u8(4)
            .i8_values(1.0, &[1, -2, 3])
            .bytes(&q8),
    );
    let mut q4 = Vec::new();
    for _ in 0..2 {
        q4.extend([0x00, 0xC0]);
        q4.extend([0x0F, 0xF0, 0x88, 0x00, 0xFF, 0x12, 0x34, 0x56].repeat(2));
    }
    write(
        "gguf_bytes",
        "q4_valid_k32_n2",
        Enc::new(0).u8(1).u8(0).u16(32).u8(2).u8(0).u8(0).bytes(&q4),
    );
    // F16 with a NaN value in row 1; F32 with -0.0 and subnormals (valid).
    write(
        "gguf_bytes",
        "f16_nan",
        Enc::new(0)
            .u8(2)
            .u8(0)
            .u16(3)
            .u8(2)
            .u8(0)
            .u8(0)
            .u16(0x3C00)
            .u16(0x8000)
            .u16(0x0001)
            .u16(0x7BFF)
            .u16(0x7E00)
            .u16(0xFC00),
    );
    write(
        "gguf_bytes",
        "f32_valid",
        Enc::new(0)
            .u8(3)
            .u8(0)
            .u16(2)
            .u8(2)
            .u8(0)
            .u8(0)
            .u32(0x8000_0000)
            .u32(1)
            .u32(0x807F_FFFF)
            .u32(0x7F7F_FFFF),
    );
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
            .u8(1)
            .u8(0xFF)
            .u64(1 << 40)
            .u64(1 << 30)
            .u8(0)
            .u8(6),
    );
}

fn forward_into() {
    // Header: fill, kind, k (u16 % 200 + 1), n (u8 % 40 + 1), flags (bit 0 bias),
    // batch byte (>= 0xF0: a u64 follows, else % 24), input delta, output delta
    // (i8 % 4; ±3 = exact), then [bias], weights, input values.
    let good = |kind: u8, batch: u8| {
        Enc::new(2)
            .u8(kind)
            .u16(44)
            .u8(20)
            .u8(1)
            .u8(batch)
            .u8(0)
            .u8(0)
    };
    write("forward_into", "q8_good_shapes", good(0, 3));
    write("forward_into", "q4_good_shapes", good(1, 1));
    write("forward_into", "batch_zero", good(5, 0));
    write(
        "forward_into",
        "input_too_short",
        Enc::new(2).u8(3).u16(7).u8(3).u8(0).u8(2).u8(0xFF).u8(0),
    );
    write(
        "forward_into",
        "output_too_long",
        Enc::new(2).u8(6).u16(7).u8(3).u8(0).u8(2).u8(0).u8(1),
    );
    write(
        "forward_into",
        "huge_batch",
        Enc::new(0)
            .u8(0)
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
