//! Activation quantization and the weight quantizers on arbitrary f32 rows
//! (every bit pattern: NaN, ±Inf, subnormals, -0.0; every length).
//!
//! - `Kernels::quantize_rows` of every available ISA gives the scalar
//!   `ActBlock` bytes, and the scalar blocks follow the canonical definition
//!   (crate docs of blockq-kernels). Wrong shapes are errors on every ISA.
//!   Activations are quantized for every block format of `QuantType::ALL` (its
//!   `act_offset`: Q8_0 128, Q4_0 8, Q5_0 16, Q4_1 / Q5_1 -1, i.e. `corr` is
//!   the code sum).
//! - llama.cpp's quantizers of every format (`QuantType::quantize_to_bytes`,
//!   rows padded to 32) and their dequantization run on anything without
//!   panicking, and every clone of the load-time loops this CPU runs
//!   (`blockq_kernels::load`, per `Level`) gives their bytes and values.
//! - `QuantizedLinear::try_from_linear_params` for every format returns Ok
//!   exactly when the documented errors do not apply, else one of them
//!   (NaN/Inf weights: `NonFinite`; a block scale or minimum, or a float value,
//!   that overflows its f16 / bf16: `OutOfRange` at the first such block or
//!   value); an Ok layer holds exactly the bytes of the reference quantizer
//!   and dequantizes them as the reference does.
#![no_main]

use blockq::kernels::act::{ActBlock, NAN_SCALE_BITS, TINY_AMAX_BITS};
use blockq::kernels::formats::{FloatElem, PackedBlock};
use blockq::kernels::load::{self, Level};
use blockq::kernels::{match_format, Kernels, WeightFormat};
use blockq::{dispatch, Error, Isa, QuantType, QuantizedLinear, QK};
use blockq_fuzz::{assert_same, bias_errors, check_result, non_finite, Src};
use bytemuck::Zeroable;
use libfuzzer_sys::fuzz_target;

/// Checks one scalar block against the canonical definition, for weights whose
/// unsigned codes carry `offset` (`FormatInfo::act_offset`; -1 for formats
/// with a minimum, whose `corr` is the code sum).
fn check_canonical(x: &[f32], offset: i32, blk: &ActBlock, at: &str) {
    let mut v = [0.0f32; QK];
    v[..x.len()].copy_from_slice(x);
    let amax = v.iter().map(|x| x.to_bits() & 0x7FFF_FFFF).max().unwrap();
    let (d, codes): (u32, [i8; QK]) = if amax >= 0x7F80_0000 {
        (NAN_SCALE_BITS, [0; QK])
    } else if amax < TINY_AMAX_BITS {
        (0, [0; QK])
    } else {
        let a = f32::from_bits(amax);
        let id = 127.0 / a;
        (
            (a / 127.0).to_bits(),
            core::array::from_fn(|j| {
                let q = (v[j] * id).round_ties_even();
                assert!(
                    (-127.0..=127.0).contains(&q),
                    "code {q} out of range at {at}"
                );
                q as i8
            }),
        )
    };
    let half = |h: usize| {
        codes[16 * h..16 * h + 16]
            .iter()
            .map(|&q| q as i32)
            .sum::<i32>()
    };
    let (d, sum) = (f32::from_bits(d), half(0) + half(1));
    let want = ActBlock {
        qs: codes,
        d,
        corr: -offset * sum,
        half_sums: [half(0) as i16, half(1) as i16],
        dsum: d * sum as f32,
    };
    assert!(
        bytemuck::bytes_of(blk) == bytemuck::bytes_of(&want),
        "scalar activation block differs from the canonical definition at {at}: \
         got {blk:?}, want {want:?}, input {x:?}"
    );
}

/// Activation quantization for the block format `misuse >> 3` (modulo their
/// number, in `QuantType::ALL` order): every ISA equals scalar, scalar equals
/// the definition, `misuse % 8` in 0..=4 makes one argument wrong (k = 0, block
/// count off by one, values not whole rows, a float weight format), which
/// every ISA must reject.
fn check_activations(x: &[f32], k: usize, misuse: u8) {
    let scalar = Kernels::for_isa(Isa::Scalar).expect("scalar kernels");
    let (blocks, floats): (Vec<WeightFormat>, Vec<WeightFormat>) = WeightFormat::ALL
        .into_iter()
        .partition(|f| f.is_block_quantized());
    let pick = (misuse >> 3) as usize;
    let format = blocks[pick % blocks.len()];
    let offset = format.info().act_offset.expect("a block format");
    let rows = x.len() / k;
    let nb = k.div_ceil(QK);
    let bad: Option<(usize, usize, usize, WeightFormat)> = match misuse % 8 {
        0 => Some((0, rows * k, rows * nb, format)),
        1 => Some((k, rows * k, rows * nb + 1, format)),
        2 if rows * nb > 0 => Some((k, rows * k, rows * nb - 1, format)),
        3 if k > 1 && rows > 0 => Some((k, rows * k - 1, rows * nb, format)),
        4 => Some((k, rows * k, rows * nb, floats[pick % floats.len()])),
        _ => None,
    };
    for isa in dispatch::available() {
        let kern = Kernels::for_isa(isa).unwrap_or_else(|e| panic!("{isa} available but {e}"));
        if let Some((bk, len, blocks, f)) = bad {
            let mut out = vec![ActBlock::zeroed(); blocks];
            let r = kern.quantize_rows(&x[..len], bk, f, &mut out);
            assert!(
                r.is_err(),
                "{isa}: quantize_rows accepted k={bk}, {len} values, {blocks} blocks, {f:?}"
            );
        }
    }
    let mut want = vec![ActBlock::zeroed(); rows * nb];
    scalar
        .quantize_rows(&x[..rows * k], k, format, &mut want)
        .unwrap_or_else(|e| panic!("scalar quantize_rows rejected valid shapes: {e}"));
    for (b, blk) in want.iter().enumerate() {
        let (r, c) = (b / nb, (b % nb) * QK);
        let row = &x[r * k..(r + 1) * k];
        check_canonical(
            &row[c..(c + QK).min(k)],
            offset,
            blk,
            &format!("row {r} block {}", b % nb),
        );
    }
    for isa in dispatch::available() {
        let mut got = vec![ActBlock::zeroed(); rows * nb];
        Kernels::for_isa(isa)
            .unwrap()
            .quantize_rows(&x[..rows * k], k, format, &mut got)
            .unwrap_or_else(|e| panic!("{isa}: quantize_rows rejected valid shapes: {e}"));
        for (b, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                bytemuck::bytes_of(g) == bytemuck::bytes_of(w),
                "MISMATCH {isa} vs scalar activation block {} of row {} (k={k}, {format:?}): got {g:?} \
                 want {w:?}, input {:?}",
                b % nb,
                b / nb,
                &x[(b / nb) * k + (b % nb) * QK
                    ..((b / nb) * k + (b % nb + 1) * QK).min((b / nb + 1) * k)]
            );
        }
    }
}

/// The reference bytes of `w` (`[n, k]`) in `qt` (llama.cpp's quantizer of
/// each zero-padded row, `QuantType::quantize_to_bytes`), or the errors to
/// expect: NaN/Inf weights, else the first block whose f16 scale or minimum
/// overflows (or float value that rounds to infinity) is `OutOfRange`.
fn reference(w: &[f32], k: usize, n: usize, qt: QuantType) -> Result<Vec<u8>, Vec<Error>> {
    if let Some(e) = non_finite("weight", w) {
        return Err(vec![e]);
    }
    // Block formats quantize whole 32-blocks; float formats the k values.
    let len = k.div_ceil(qt.block_size()) * qt.block_size();
    let mut padded = vec![0.0f32; len];
    let mut row = vec![0u8; qt.row_bytes(len)];
    let mut bytes = Vec::with_capacity(row.len() * n);
    for r in 0..n {
        padded[..k].copy_from_slice(&w[r * k..(r + 1) * k]);
        qt.quantize_to_bytes(&padded, &mut row);
        let size = qt.bytes_per_block();
        let overflows = |b: &[u8]| {
            match_format!(
                qt,
                B => bytemuck::pod_read_unaligned::<B>(b).scales()[..B::SCALES]
                    .iter()
                    .any(|d| !d.is_finite()),
                E => !bytemuck::pod_read_unaligned::<E>(b).le_to_f32().is_finite(),
            )
        };
        if let Some(block) = row.chunks_exact(size).position(overflows) {
            return Err(vec![Error::OutOfRange {
                quant_type: qt,
                row: r,
                block,
            }]);
        }
        bytes.extend_from_slice(&row);
    }
    Ok(bytes)
}

/// llama.cpp's dequantization of `bytes` (`[n]` rows of `qt.row_bytes(k)`) as
/// `[n, k]` f32.
fn dequantize(bytes: &[u8], k: usize, qt: QuantType) -> Vec<f32> {
    let len = k.div_ceil(qt.block_size()) * qt.block_size();
    let mut row = vec![0.0f32; len];
    let mut w = Vec::new();
    for r in bytes.chunks_exact(qt.row_bytes(k)) {
        qt.dequantize_bytes(r, &mut row);
        w.extend_from_slice(&row[..k]);
    }
    w
}

/// Each load-time clone this CPU runs quantizes `x` into the reference
/// `bytes` and dequantizes those into the reference `deq`.
fn check_load_clones(qt: QuantType, x: &[f32], bytes: &[u8], deq: &[f32]) {
    for level in Level::ALL.into_iter().filter(|l| l.available()) {
        let (got, got_deq) = match_format!(
            qt,
            B => {
                let mut q = vec![B::padding(); x.len() / B::VALUES];
                load::quantize_blocks_on(level, x, &mut q).unwrap();
                let stored: Vec<B> = bytes
                    .chunks_exact(qt.bytes_per_block())
                    .map(bytemuck::pod_read_unaligned)
                    .collect();
                let mut d = vec![0.0f32; x.len()];
                load::dequantize_blocks_on(level, &stored, &mut d).unwrap();
                (bytemuck::cast_slice::<B, u8>(&q).to_vec(), d)
            },
            E => {
                let mut q = vec![E::from_f32_le(0.0); x.len()];
                load::floats_from_f32_on(level, x, &mut q).unwrap();
                let stored: Vec<E> = bytes
                    .chunks_exact(qt.bytes_per_block())
                    .map(bytemuck::pod_read_unaligned::<E>)
                    .collect();
                let mut d = vec![0.0f32; x.len()];
                load::floats_to_f32_on(level, &stored, &mut d).unwrap();
                (bytemuck::cast_slice::<E, u8>(&q).to_vec(), d)
            },
        );
        assert!(
            got == bytes,
            "MISMATCH {level} clone vs reference quantizer {qt}, input {x:?}"
        );
        assert_same(
            &format!("{level} clone vs reference dequantization {qt}"),
            &got_deq,
            deq,
            x.len(),
        );
    }
}

fn check_layers(w: &[f32], k: usize, n: usize, bias: Option<&[f32]>) {
    for qt in QuantType::ALL {
        let case = format!(
            "try_from_linear_params {qt} k={k} n={n} bias={:?}",
            bias.map(|b| b.len())
        );
        let want = reference(w, k, n, qt);
        let mut allowed = bias_errors(bias, n);
        if let Err(e) = &want {
            allowed.extend(e.iter().cloned());
        }
        let r = QuantizedLinear::try_from_linear_params(w, bias, k, n, qt);
        if let Some(layer) = check_result(r, &allowed, &case) {
            let want = want.unwrap();
            assert!(
                layer.to_gguf_bytes() == want,
                "layer bytes differ from the reference quantizer; {case}"
            );
            assert_eq!(
                (layer.in_features, layer.out_features, layer.quant_type),
                (k, n, qt),
                "{case}"
            );
            let deq = layer.dequantize_weights();
            assert_same(
                &format!("dequantize_weights vs the reference, {case}"),
                &deq,
                &dequantize(&want, k, qt),
                k,
            );
            if qt == QuantType::F32 {
                assert_same(&format!("dequantize_weights, {case}"), &deq, w, k);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut src = Src::new(data);
    let k = src.u16() as usize % 1100 + 1;
    let m = (src.u8() as usize % 8 + 1).min((8192 / k).max(1));
    let misuse = src.u8();
    let flags = src.u8();
    let x = src.values(m * k);
    let bias = (flags & 1 != 0).then(|| {
        let len = if flags & 2 != 0 { m + 1 } else { m };
        src.values(len)
    });

    check_activations(&x, k, misuse);

    // llama.cpp's quantizers and dequantizers of every format: any values
    // (rows zero-padded to whole blocks), no panic; every clone of the
    // load-time loops gives their bytes and values.
    for qt in QuantType::ALL {
        let bs = qt.block_size().max(QK);
        let padded_len = k.div_ceil(bs) * bs;
        let mut padded = vec![0.0f32; padded_len];
        let mut out = vec![0.0f32; padded_len];
        let mut bytes = vec![0u8; qt.row_bytes(padded_len)];
        for row in x.chunks_exact(k) {
            padded[..k].copy_from_slice(row);
            qt.quantize_to_bytes(&padded, &mut bytes);
            qt.dequantize_bytes(&bytes, &mut out);
            check_load_clones(qt, &padded, &bytes, &out);
        }
    }

    check_layers(&x, k, m, bias.as_deref());
});
