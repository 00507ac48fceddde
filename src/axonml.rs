//! axonml integration (cargo feature `axonml`): run a [`QuantizedLinear`] on
//! axonml `Variable`s, quantize an axonml `Linear`, and use the layer as an
//! axonml `Module`.
//!
//! The calls follow axonml-quant's `QuantizedLinear` (forward only; outputs
//! have `requires_grad = false`). Only inference is supported: quantized
//! weights are not trainable parameters.

use crate::{Error, QuantType, QuantizedLinear};
use axonml_autograd::Variable;
use axonml_nn::{Linear, Module, Parameter};
use axonml_tensor::Tensor;

impl QuantizedLinear {
    /// Forward pass on an axonml `Variable`; the output does not track
    /// gradients.
    ///
    /// Shapes, as axonml-quant: `[batch, in_features]` gives
    /// `[batch, out_features]` and `[in_features]` gives `[1, out_features]`.
    /// Higher ranks `[d0, .., dn, in_features]` give `[d0, .., dn, out_features]`
    /// (leading dimensions flattened into the batch, as axonml's `Linear` does).
    ///
    /// # Panics
    /// If the last dimension is not `in_features` (or the input is a scalar).
    pub fn forward_var(&self, input: &Variable) -> Variable {
        self.try_forward_var(input)
            .unwrap_or_else(|e| panic!("QuantizedLinear::forward_var: {e}"))
    }

    /// Fallible [`Self::forward_var`].
    pub fn try_forward_var(&self, input: &Variable) -> Result<Variable, Error> {
        let shape = input.shape();
        let Some((&last, lead)) = shape.split_last() else {
            return Err(Error::ZeroSize { what: "input rank" });
        };
        if last != self.in_features {
            return Err(Error::LengthMismatch {
                what: "input's last dimension",
                expected: self.in_features,
                actual: last,
            });
        }
        let batch = lead
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or(Error::SizeOverflow {
                what: "batch dimensions",
            })?;
        let x = input.data().to_vec();
        let y = self.try_forward_f32(&x, batch)?;
        let mut out_shape = if lead.is_empty() {
            vec![1]
        } else {
            lead.to_vec()
        };
        out_shape.push(self.out_features);
        let t = Tensor::from_vec(y, &out_shape)
            .expect("output length is batch * out_features by construction");
        Ok(Variable::new(t, false))
    }

    /// The weights as an axonml tensor `[out_features, in_features]`, exactly
    /// as llama.cpp dequantizes them (see [`Self::dequantize_weights`]).
    pub fn dequantize_weights_tensor(&self) -> Tensor<f32> {
        Tensor::from_vec(
            self.dequantize_weights(),
            &[self.out_features, self.in_features],
        )
        .expect("dequantize_weights has out_features * in_features values")
    }

    /// Quantizes an axonml `Linear` layer (weight `[out, in]`, optional bias)
    /// to `quant_type`, as [`Self::try_from_linear_params`] does.
    pub fn from_axonml_linear(linear: &Linear, quant_type: QuantType) -> Result<Self, Error> {
        let (k, n) = (linear.in_features(), linear.out_features());
        let w = linear.weight.data();
        if w.shape() != [n, k] {
            return Err(Error::LengthMismatch {
                what: "axonml Linear weight",
                expected: n * k,
                actual: w.shape().iter().product(),
            });
        }
        let b = linear.bias.as_ref().map(|b| b.data().to_vec());
        Self::try_from_linear_params(&w.to_vec(), b.as_deref(), k, n, quant_type)
    }
}

/// An inference-only axonml module: `forward` is [`QuantizedLinear::forward_var`],
/// and there are no trainable parameters.
impl Module for QuantizedLinear {
    fn forward(&self, input: &Variable) -> Variable {
        self.forward_var(input)
    }

    fn parameters(&self) -> Vec<Parameter> {
        Vec::new()
    }

    fn is_training(&self) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        "QuantizedLinear"
    }
}
