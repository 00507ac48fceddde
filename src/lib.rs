//! # blockq
//!
//! Quantized linear layers for CPU inference: `y = x·Wᵀ + b` with `W` stored as
//! GGUF Q8_0 / Q4_0 / Q4_1 / Q5_0 / Q5_1 blocks (byte-identical to llama.cpp)
//! or as F16 / BF16 / F32, run
//! by SIMD kernels chosen at run time (scalar, AVX2, AVX-VNNI, AVX-512,
//! AVX-512 VNNI, NEON, dotprod, i8mm).
//!
//! **Every ISA gives the same bits as the scalar reference**, for any thread
//! count and batch size: row `b` of a batch equals that row forwarded alone.
//! The arithmetic that makes this true is specified in [`blockq_kernels`]'s
//! crate docs ("canonical arithmetic").
//!
//! ```
//! use blockq::{QuantizedLinear, QuantType};
//!
//! let (inp, out) = (64, 8);
//! let w: Vec<f32> = (0..inp * out).map(|i| (i as f32 * 0.37).sin()).collect();
//! let bias = vec![0.5f32; out];
//! let layer = QuantizedLinear::from_linear_params(&w, Some(&bias), inp, out, QuantType::Q4_0);
//! let x = vec![1.0f32; 2 * inp];
//! let y = layer.forward_f32(&x, 2); // [2, 8]
//! assert_eq!(y.len(), 16);
//! assert_eq!(y[..8], y[8..]); // same input row, same bits
//! ```
//!
//! Module layout: [`QuantType`] (formats), [`QuantizedLinear`] (the layer),
//! [`Error`], [`dispatch`] (ISA choice: `BLOCKQ_ISA`, [`QuantizedLinear::with_isa`]),
//! [`gguf`] (layers from GGUF files, without re-quantizing) and `safetensors`
//! (layers from F32/F16/BF16 safetensors weights; default feature
//! `safetensors`), [`bench`](mod@bench) (timing against the machine's measured limits, for
//! the `blockq` command and the benchmarks). With the feature `axonml`, layers also run on axonml
//! `Variable`s. [`ops`] has the rest of a transformer's row operations
//! (RMSNorm, SwiGLU, attention over a KV cache) with the same guarantee.
//! Block types and quantizers are re-exported from the kernels crate;
//! [`build_info()`] tells how this copy was built (compiler, target, profile).

#![warn(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "axonml")]
mod axonml;
pub mod bench;
mod build_info;
pub mod dispatch;
mod error;
pub mod gguf;
mod linear;
mod quant_type;
#[cfg(feature = "safetensors")]
pub mod safetensors;

pub use blockq_kernels::formats::{
    dequantize_row_bf16, dequantize_row_q4_0, dequantize_row_q4_1, dequantize_row_q4_k,
    dequantize_row_q5_0, dequantize_row_q5_1, dequantize_row_q5_k, dequantize_row_q6_k,
    dequantize_row_q8_0, quantize_row_bf16, quantize_row_q4_0, quantize_row_q4_1,
    quantize_row_q4_k, quantize_row_q5_0, quantize_row_q5_1, quantize_row_q5_k, quantize_row_q6_k,
    quantize_row_q8_0,
};
pub use blockq_kernels::ops;
pub use blockq_kernels::{
    first_difference, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K,
    BlockQ8_0, Isa, QK, QK_K,
};
pub use build_info::{build_info, BuildInfo};
pub use error::Error;
pub use linear::QuantizedLinear;
pub use quant_type::QuantType;

/// Re-export of the kernels crate, for benchmarks and advanced use.
pub use blockq_kernels as kernels;

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
