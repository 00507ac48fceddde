//! The forward API on arbitrary layers and arbitrary call shapes: batch 0,
//! small, or any u64; input and output buffers of the right length or off by a
//! little; layers of every format (`read_layer`). With flag bit 1 the stored
//! scales, minimums and float values are arbitrary, NaN/Inf included: building
//! the layer must then fail with exactly the documented error (the first bad
//! block's or value's `NonFiniteScale`, F32's `NonFinite`) or succeed when
//! they happen to be finite.
//!
//! `forward_into` and `try_forward_f32` must return Ok exactly when the shapes
//! fit, and otherwise a documented error (ZeroSize, SizeOverflow,
//! LengthMismatch naming the buffer), never panic. With fitting shapes every
//! available ISA must give the scalar bits, through both calls. ISAs the CPU
//! lacks must be refused by `with_isa` with `IsaUnavailable`.
#![no_main]

use blockq::{dispatch, Error, Isa};
use blockq_fuzz::{assert_same, check_result, on_isa, try_read_layer, Src};
use libfuzzer_sys::fuzz_target;

/// Largest buffer (values) this target allocates on purpose.
const MAX_LEN: usize = 1 << 16;

/// A length `want` (when it exists and is small) plus a small delta, else a
/// small arbitrary length.
fn length(want: Option<usize>, delta: i8) -> usize {
    match want.filter(|&w| w <= MAX_LEN) {
        Some(w) if delta.abs() < 3 => (w as isize + delta as isize).max(0) as usize,
        Some(w) => w,
        None => delta as u8 as usize,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut src = Src::new(data);
    let kind = src.u8();
    let k = src.u16() as usize % 200 + 1;
    let n = src.u8() as usize % 40 + 1;
    let flags = src.u8();
    let b = src.u8();
    let batch = if b >= 0xF0 {
        src.u64() as usize
    } else {
        b as usize % 24
    };
    let din = src.u8() as i8 % 4;
    let dout = src.u8() as i8 % 4;
    let (in_want, out_want) = (batch.checked_mul(k), batch.checked_mul(n));
    let in_len = length(in_want, din);
    let out_len = length(out_want, dout);
    let x = src.values(in_len);
    let finite = flags & 2 == 0;
    let (layer, expected, desc) = try_read_layer(&mut src, kind, k, n, flags & 1 != 0, finite);
    let allowed: Vec<Error> = expected.into_iter().collect();
    let Some(mut layer) = check_result(layer, &allowed, &format!("building the {desc}")) else {
        return;
    };
    let case = format!("{desc}, batch={batch}, input len {in_len}, output len {out_len}");

    // What the documentation allows, for forward_into and for try_forward_f32.
    let mut into_errors = Vec::new();
    let mut f32_errors = Vec::new();
    if batch == 0 {
        into_errors.push(Error::ZeroSize { what: "batch_size" });
        f32_errors.push(Error::ZeroSize { what: "batch_size" });
    }
    match in_want {
        None => {
            into_errors.push(Error::SizeOverflow {
                what: "batch_size * in_features",
            });
            f32_errors.push(Error::SizeOverflow {
                what: "batch_size * in_features",
            });
        }
        Some(w) if w != in_len => {
            let e = Error::LengthMismatch {
                what: "input",
                expected: w,
                actual: in_len,
            };
            into_errors.push(e.clone());
            f32_errors.push(e);
        }
        Some(_) => {}
    }
    match out_want {
        None => {
            into_errors.push(Error::SizeOverflow {
                what: "batch_size * out_features",
            });
            f32_errors.push(Error::SizeOverflow {
                what: "batch_size * out_features",
            });
        }
        Some(w) if w != out_len => into_errors.push(Error::LengthMismatch {
            what: "output",
            expected: w,
            actual: out_len,
        }),
        Some(_) => {}
    }

    let sentinel = f32::from_bits(0x7FA5_A5A5);
    let mut want: Option<Vec<f32>> = None;
    for isa in std::iter::once(Isa::Scalar).chain(dispatch::available()) {
        on_isa(&mut layer, isa);
        let mut out = vec![sentinel; out_len];
        let r = layer.forward_into(&x, batch, &mut out);
        let ok = check_result(r, &into_errors, &format!("forward_into on {isa}, {case}"));
        let r = layer.try_forward_f32(&x, batch);
        let y = check_result(r, &f32_errors, &format!("try_forward_f32 on {isa}, {case}"));
        if let (Some(()), Some(y)) = (ok, y) {
            assert_same(
                &format!("{isa}: forward_into vs try_forward_f32, {case}"),
                &out,
                &y,
                n,
            );
            match &want {
                None => want = Some(out),
                Some(w) => assert_same(&format!("{isa} vs scalar, {case}"), &out, w, n),
            }
        }
    }

    for isa in Isa::ALL {
        if !dispatch::available().contains(&isa) {
            match layer.clone().with_isa(isa) {
                Err(Error::IsaUnavailable { isa: i, .. }) if i == isa => {}
                Err(e) => panic!("with_isa({isa}) on a CPU without it: wrong error {e:?}"),
                Ok(_) => panic!("with_isa({isa}) accepted an ISA this CPU lacks"),
            }
        }
    }
});
