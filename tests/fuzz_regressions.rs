//! Regression tests for bugs found by the fuzz targets (`fuzz/`), one per bug,
//! each with the smallest call that reproduces it.

use blockq::{Error, QuantType, QuantizedLinear};

/// Found by `forward_into`: `try_forward_f32` allocated the `batch *
/// out_features` output before checking the input length, so a huge batch with
/// a short input panicked ("capacity overflow") or aborted on allocation
/// failure instead of returning the documented `LengthMismatch`.
#[test]
fn try_forward_f32_checks_the_input_before_allocating_the_output() {
    let (k, n) = (32, 16);
    let layer = QuantizedLinear::from_linear_params(&[0.5; 32 * 16], None, k, n, QuantType::Q8_0);
    // batch * k = 2^63 fits in usize; the 2^62 f32 outputs (2^64 bytes) cannot
    // be allocated. (With 2^40 outputs the old code aborted the process.)
    let batch = 1usize << 58;
    let e = layer.try_forward_f32(&[1.0; 32], batch).unwrap_err();
    assert_eq!(
        e,
        Error::LengthMismatch {
            what: "input",
            expected: batch * k,
            actual: 32
        }
    );
}
