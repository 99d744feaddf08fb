//! LoRA-FA (Zhang et al., 2023, "LoRA-FA: Memory-efficient Low-rank Adaptation"): LoRA whose
//! A is frozen at its initialisation, so only B trains. Backward then needs no gradient for A,
//! and so not the input activations x that A's gradient reads, only the r-wide x Aᵀ: that is
//! the memory the method saves.
//!
//! With A fixed, B alone cannot follow the full gradient g_W of the weight (B's gradient is
//! g_B = s·g_W Aᵀ). PEFT's `LoraFAOptimizer` (`peft/optimizers/lorafa.py`) uses instead the ΔB
//! whose update s·ΔB·A is closest to g_W in Frobenius norm, ΔB = (1/s) g_W Aᵀ (A Aᵀ)⁻¹:
//!
//! ```text
//! g_B ← (1/s²) · g_B · (A Aᵀ + δ I)⁺          δ = 1e-8, ⁺ the pseudo-inverse
//! ```
//!
//! then takes an Adam step on B. tunelab does the projection in [`Hooks::project_grads`]
//! (after clipping, as PEFT's optimizer sees the clipped gradient) and the Adam step with the
//! Trainer's AdamW. PEFT's optimizer is `transformers`' old AdamW (`adamw-hf`): ε = 1e-6 and the
//! weight decay applied after the Adam update; tunelab's AdamW is PyTorch's (ε = 1e-8, decay
//! first). With equal ε and no weight decay the steps are the same
//! (`tests/suite/lora_variants.rs` checks two steps against PEFT's optimizer).
//!
//! Everything else is LoRA ([`super::lora`]): the pairs, targets, scaling and initialisations.
//! The adapter holds A and B, as a PEFT LoRA adapter does (PEFT saves LoRA-FA as plain LoRA:
//! `export-peft` writes it so).

use super::lora::{self, Lora, LoraConfig};
use super::method::{CompareExample, ExampleContext, Examples, Method, MethodEntry};
use super::spec::MethodSpec;
use crate::autodiff::{Grads, ParamId, ParamStore, Tape, Var};
use crate::error::Result;
use crate::nn::{Hooks, Site, Transformer};
use crate::tensor::Float;
use ndarray::{Array2, Ix2};

/// LoRA-FA's line in the registry.
pub const ENTRY: MethodEntry = MethodEntry {
    name: "lora-fa",
    help: "LoRA with A frozen and B's gradient projected, as PEFT's LoRA-FA optimizer (LoRA's options)",
    identity_at_init: true,
    spec: |o, _| Ok(MethodSpec::LoraFa(lora::config(o)?)),
    examples,
};

fn examples(_: &ExampleContext) -> Examples {
    Examples {
        compare: vec![CompareExample {
            label: "lora-fa r=8 q,v",
            spec: MethodSpec::LoraFa(lora::compare_config()),
            lr: 9e-3,
            base_dtype: crate::nn::BaseDtype::F32,
        }],
        bench: vec![("lora_fa_r8_qv", MethodSpec::LoraFa(LoraConfig::default()))],
        tests: vec![
            ("lora_fa", MethodSpec::LoraFa(lora::test_config(false))),
            ("lora_fa_fc", MethodSpec::LoraFa(lora::test_config(true))),
        ],
    }
}

/// δ of PEFT's projection: (A Aᵀ + δ I)⁺.
pub const DELTA: f64 = 1e-8;

/// LoRA-FA applied to a model: LoRA's pairs with every A frozen.
pub struct LoraFa {
    pub lora: Lora,
    /// Every pair's A.
    frozen: Vec<ParamId>,
}

impl LoraFa {
    pub fn apply<F: Float>(
        model: &Transformer,
        store: &mut ParamStore<F>,
        config: LoraConfig,
        seed: u64,
    ) -> Result<Self> {
        let lora = Lora::apply(model, store, config, seed)?;
        let frozen: Vec<ParamId> = Method::<F>::params(&lora)
            .chunks(2)
            .map(|ab| ab[0])
            .collect();
        for &a in &frozen {
            store.set_trainable(a, false);
        }
        Ok(Self { lora, frozen })
    }
}

// ANCHOR: project
/// LoRA-FA's gradient for B (cols, r) from its LoRA gradient `g_b` and A (r, d_in), scaling s:
/// (1/s²) g_B (A Aᵀ + δ I)⁺. `eps` is the machine epsilon of the training precision (the
/// pseudo-inverse's cut-off, as `torch.linalg.pinv`).
pub fn project(g_b: &Array2<f64>, a: &Array2<f64>, scaling: f64, eps: f64) -> Array2<f64> {
    let r = a.nrows();
    let gram = a.dot(&a.t()) + Array2::<f64>::eye(r) * DELTA;
    let inv = super::linalg::pinv(&gram, eps);
    g_b.dot(&inv) / (scaling * scaling)
}
// ANCHOR_END: project

impl<F: Float> Hooks<F> for LoraFa {
    fn linear(&self, tape: &mut Tape<'_, F>, site: &Site<'_>, x: Var, y: Var) -> Result<Var> {
        self.lora.linear(tape, site, x, y)
    }

    fn project_grads(&self, store: &ParamStore<F>, grads: &mut Grads<F>) -> Result<()> {
        let scaling = self.lora.config.scaling();
        let eps = F::epsilon().as_f64();
        for ab in Method::<F>::params(&self.lora).chunks(2) {
            let (a, b) = (ab[0], ab[1]);
            let Some(g) = grads.get_mut(b) else { continue };
            let as64 = |v: &ndarray::ArrayD<F>| {
                v.mapv(|x| x.as_f64())
                    .into_dimensionality::<Ix2>()
                    .expect("LoRA's A and B are 2-D")
            };
            let projected = project(&as64(g), &as64(store.value(a)), scaling, eps);
            *g = projected.mapv(F::of).into_dyn();
        }
        Ok(())
    }
}

impl<F: Float> Method<F> for LoraFa {
    fn name(&self) -> &'static str {
        "lora-fa"
    }

    /// A and B of every pair: both are saved, only B trains.
    fn params(&self) -> &[ParamId] {
        Method::<F>::params(&self.lora)
    }

    fn frozen_params(&self) -> Vec<ParamId> {
        self.frozen.clone()
    }

    fn lr_multipliers(&self) -> Vec<(ParamId, f64)> {
        Method::<F>::lr_multipliers(&self.lora)
    }

    fn finalize(&mut self, store: &mut ParamStore<F>) -> Result<()> {
        self.lora.convert_to_plain(store)
    }

    fn saved_spec(&self, _spec: &MethodSpec) -> MethodSpec {
        MethodSpec::LoraFa(self.lora.config.clone())
    }
}
