//! `--base-dtype f32|bf16|nf4`: the frozen base stored in fewer bits, as QLoRA does it.
//!
//! Every Linear of the blocks (attention and MLP projections) is quantised; embeddings,
//! LayerNorms, biases and heads stay in f32, as bitsandbytes' Hugging Face integration keeps them
//! (`Linear4bit` replaces `nn.Linear` / Conv1D modules only, and `lm_head` is skipped). A
//! quantised weight is dequantised a tile at a time inside its matmul
//! (`crate::autodiff::ops::quant_matmul`) and never trains; a method such as LoRA adds its f32
//! update on top through the usual hooks, which is all QLoRA is: LoRA on a 4-bit base.
//!
//! NF4 uses bitsandbytes' layout ([`crate::kernels::nf4`]): blocks of 64 consecutive values of
//! the weight in `nn.Linear` orientation (out, in), so GPT-2's Conv1D weights are transposed
//! first, one absmax per block, optionally double-quantised (`--double-quant`, bitsandbytes'
//! `compress_statistics`, QLoRA's `bnb_4bit_use_double_quant`).

use super::layers::Layout;
use super::transformer::Transformer;
use crate::autodiff::ParamStore;
use crate::error::Result;
use crate::kernels::quant::QuantWeight;
use crate::tensor::Float;
use ndarray::{Array2, Ix2};
use serde::{Deserialize, Serialize};

/// bitsandbytes' default 4-bit block size (`blocksize=64` in `quantize_4bit`).
pub const NF4_BLOCKSIZE: usize = 64;

/// How the base's block Linears are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseDtype {
    /// As loaded: f32.
    #[default]
    F32,
    /// bfloat16: 16 bits per value, rounded to nearest-even.
    Bf16,
    /// QLoRA's 4-bit NormalFloat in blocks of 64, with the block constants double-quantised
    /// when `double_quant`.
    Nf4 { double_quant: bool },
}

impl BaseDtype {
    /// `f32`, `bf16`, `nf4` or `nf4+dq`.
    pub fn name(self) -> &'static str {
        match self {
            BaseDtype::F32 => "f32",
            BaseDtype::Bf16 => "bf16",
            BaseDtype::Nf4 {
                double_quant: false,
            } => "nf4",
            BaseDtype::Nf4 { double_quant: true } => "nf4+dq",
        }
    }
}

/// What quantising the base did, measured.
#[derive(Debug, Clone, Serialize)]
pub struct QuantReport {
    pub dtype: BaseDtype,
    /// Linears quantised and their values.
    pub linears: usize,
    pub values: usize,
    /// Bytes of those weights in f32, and as stored now.
    pub bytes_f32: usize,
    pub bytes: usize,
    /// Bits per value as stored: 8 · bytes / values.
    pub bits_per_value: f64,
    /// ‖Ŵ − W‖ / ‖W‖ over all quantised weights together, and the largest |ŵ − w|.
    pub relative_error: f64,
    pub max_abs_error: f64,
}

impl QuantReport {
    /// One line: `base nf4+dq: 24 Linears, 786432 values, 3.00 MB → 0.41 MB (4.127 bits/value),
    /// relative error 0.0912, max |ŵ − w| 0.0321`.
    pub fn summary(&self) -> String {
        format!(
            "base {}: {} Linears, {} values, {:.2} MB → {:.2} MB ({:.3} bits/value), quantisation error ‖Ŵ−W‖/‖W‖ {:.4}, max |ŵ−w| {:.4}",
            self.dtype.name(),
            self.linears,
            self.values,
            self.bytes_f32 as f64 / 1e6,
            self.bytes as f64 / 1e6,
            self.bits_per_value,
            self.relative_error,
            self.max_abs_error
        )
    }
}

/// Stores every block Linear of `model` as `dtype` (nothing for f32). Returns what was done.
pub fn quantize_base<F: Float>(
    model: &Transformer,
    store: &mut ParamStore<F>,
    dtype: BaseDtype,
) -> Result<Option<QuantReport>> {
    if dtype == BaseDtype::F32 {
        return Ok(None);
    }
    let (mut err2, mut w2, mut max_err) = (0.0f64, 0.0f64, 0.0f64);
    let (mut values, mut bytes, mut linears) = (0, 0, 0);
    for lin in model.block_linears() {
        if store.quantized(lin.weight).is_some() {
            continue;
        }
        let w = store
            .value(lin.weight)
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(|_| crate::error::Error::Shape {
                op: "quantize",
                detail: format!("{}.weight is not 2-D", lin.module),
            })?;
        // (out, in), row-major: Conv1D's (in, out) transposed, as bitsandbytes takes it.
        let out_in: Array2<f32> = match lin.layout {
            Layout::OutIn => w.mapv(|x| x.as_f64() as f32),
            Layout::InOut => w.t().mapv(|x| x.as_f64() as f32),
        };
        let out_in = out_in.as_standard_layout().into_owned();
        let in_out = lin.layout == Layout::InOut;
        let q = match dtype {
            BaseDtype::F32 => unreachable!("returned above"),
            BaseDtype::Bf16 => QuantWeight::bf16(out_in.view(), in_out),
            BaseDtype::Nf4 { double_quant } => {
                QuantWeight::nf4(out_in.view(), in_out, NF4_BLOCKSIZE, double_quant)
            }
        };
        let back = q.dequantize();
        for (&a, &b) in out_in.iter().zip(back.iter()) {
            let d = (a - b) as f64;
            err2 += d * d;
            w2 += (a as f64) * (a as f64);
            max_err = max_err.max(d.abs());
        }
        values += q.len();
        bytes += q.bytes();
        linears += 1;
        store.quantize(lin.weight, q)?;
    }
    Ok(Some(QuantReport {
        dtype,
        linears,
        values,
        bytes_f32: 4 * values,
        bytes,
        bits_per_value: if values == 0 {
            0.0
        } else {
            8.0 * bytes as f64 / values as f64
        },
        relative_error: if w2 > 0.0 { (err2 / w2).sqrt() } else { 0.0 },
        max_abs_error: max_err,
    }))
}
