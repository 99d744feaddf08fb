//! Optimizers, schedules and clipping against PyTorch, llm.c style.
//!
//! `tests/fixtures/optim_golden.json` is written by `tools/optim_golden.py` (torch.optim.AdamW and
//! torch.optim.SGD under transformers' LambdaLR schedules, in float64, on fixed parameters and
//! fixed per-step gradients). Each case is replayed here in f64 and every parameter is compared
//! after every step; the report prints OK / NOT OK with the max difference per tensor. Then come
//! small cases worked out by hand.
//!
//! `cargo test --test suite optim:: -- --nocapture` shows the reports.

use approx::{abs_diff_eq, assert_abs_diff_eq};
use ndarray::{array, ArrayD, IxDyn};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Write;
use tunelab::optim::{
    clip_grad_norm, grad_norm, grad_norms, is_no_decay_name, AdamW, AdamWConfig, Optimizer,
    ParamOptions, Schedule, Sgd, SgdConfig, CLIP_EPS,
};
use tunelab::{Error, Float, Grads, ParamId, ParamStore, Tape};

/// Parameters after every step must match PyTorch to this (f64).
const TOL: f64 = 1e-6;
/// Learning rates and schedule factors are a few float operations: they must match to this.
const TOL_LR: f64 = 1e-12;

// ---------------------------------------------------------------------------------------------
// The fixture

#[derive(Deserialize)]
struct Fixture {
    torch_version: String,
    transformers_version: String,
    steps: usize,
    params: Vec<FixtureParam>,
    /// grads[step][param name]: `None` when the parameter has no gradient on that step.
    grads: Vec<HashMap<String, Option<Vec<f64>>>>,
    cases: Vec<Case>,
    schedules: Vec<ScheduleTable>,
    clip: Vec<ClipCase>,
}

#[derive(Deserialize)]
struct FixtureParam {
    name: String,
    shape: Vec<usize>,
    data: Vec<f64>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    optimizer: String,
    lr: f64,
    weight_decay: f64,
    betas: [f64; 2],
    eps: f64,
    momentum: f64,
    nesterov: bool,
    schedule: FixtureSchedule,
    groups: Vec<Group>,
    /// lrs[step][group]: the learning rate PyTorch used.
    lrs: Vec<Vec<f64>>,
    /// params_after[step][param name]
    params_after: Vec<HashMap<String, Vec<f64>>>,
    /// PyTorch's optimizer state after the last step, named like tunelab's.
    state_after: HashMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct FixtureSchedule {
    kind: String,
    warmup_steps: usize,
    total_steps: usize,
}

#[derive(Deserialize)]
struct Group {
    params: Vec<String>,
    lr_mult: f64,
    decay: bool,
}

#[derive(Deserialize)]
struct ScheduleTable {
    #[serde(flatten)]
    schedule: FixtureSchedule,
    factors: Vec<f64>,
}

#[derive(Deserialize)]
struct ClipCase {
    max_norm: f64,
    step: usize,
    total_norm: f64,
    clipped: HashMap<String, Vec<f64>>,
}

fn fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/optim_golden.json"
    );
    let text = std::fs::read_to_string(path).expect("read the optim golden fixture");
    serde_json::from_str(&text).expect("parse the optim golden fixture")
}

impl FixtureSchedule {
    fn to_schedule(&self) -> Schedule {
        let (warmup_steps, total_steps) = (self.warmup_steps, self.total_steps);
        match self.kind.as_str() {
            "constant" => Schedule::Constant,
            "constant_with_warmup" => Schedule::ConstantWithWarmup { warmup_steps },
            "linear" => Schedule::Linear {
                warmup_steps,
                total_steps,
            },
            "cosine" => Schedule::Cosine {
                warmup_steps,
                total_steps,
            },
            other => panic!("unknown schedule kind {other}"),
        }
    }
}

/// The fixture's initial parameters, all trainable, in type `F`.
fn store_of<F: Float>(fx: &Fixture) -> ParamStore<F> {
    let mut store = ParamStore::new();
    for p in &fx.params {
        let data = p.data.iter().map(|&x| F::of(x)).collect();
        let value = ArrayD::from_shape_vec(IxDyn(&p.shape), data).unwrap();
        store.add(p.name.clone(), value, true).unwrap();
    }
    store
}

/// Gradients equal to the given arrays, produced the way training produces them: a backward
/// pass, here of `loss = sum(p * G)`, whose gradient with respect to `p` is exactly `G`.
fn grads_of<F: Float>(store: &ParamStore<F>, given: &[(ParamId, ArrayD<F>)]) -> Grads<F> {
    let mut grads = Grads::new(store);
    for (id, g) in given {
        let mut tape = Tape::new(store);
        let p = tape.param(*id);
        let c = tape.constant(g.clone());
        let pg = tape.mul(p, c).unwrap();
        let loss = tape.sum_all(pg).unwrap();
        tape.backward(loss, &mut grads).unwrap();
    }
    grads
}

/// The fixture's gradients for `step`.
fn step_grads<F: Float>(fx: &Fixture, store: &ParamStore<F>, step: usize) -> Grads<F> {
    let given: Vec<(ParamId, ArrayD<F>)> = fx
        .params
        .iter()
        .filter_map(|p| {
            let g = fx.grads[step][&p.name].as_ref()?;
            let data = g.iter().map(|&x| F::of(x)).collect();
            let id = store.id(&p.name).unwrap();
            Some((id, ArrayD::from_shape_vec(IxDyn(&p.shape), data).unwrap()))
        })
        .collect();
    grads_of(store, &given)
}

/// The elements of `a` in row-major order, as f64: the layout of the fixture's lists.
fn flat<F: Float>(a: &ArrayD<F>) -> Vec<f64> {
    a.iter().map(|&x| Float::as_f64(x)).collect()
}

/// Whether `a` matches the fixture's `b` to `tol` (approx's absolute difference), and the
/// largest difference, for the report.
fn compare(a: &[f64], b: &[f64], tol: f64) -> (bool, f64) {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let max_diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    (abs_diff_eq!(a, b, epsilon = tol), max_diff)
}

/// The optimizer a case describes, with its param groups as per-parameter options.
fn optimizer_of<F: Float>(case: &Case, store: &ParamStore<F>) -> Box<dyn Optimizer<F>> {
    match case.optimizer.as_str() {
        "adamw" => {
            let mut opt = AdamW::new(AdamWConfig {
                beta1: case.betas[0],
                beta2: case.betas[1],
                eps: case.eps,
                weight_decay: case.weight_decay,
            })
            .unwrap();
            for g in &case.groups {
                for name in &g.params {
                    let options = ParamOptions {
                        lr_mult: g.lr_mult,
                        weight_decay: g.decay,
                    };
                    opt.set_options(store.id(name).unwrap(), options).unwrap();
                }
            }
            Box::new(opt)
        }
        // tunelab's SGD has no per-parameter options: PyTorch's param groups become one SGD
        // per group.
        "sgd" => Box::new(GroupedSgd::new(case, store)),
        other => panic!("unknown optimizer {other}"),
    }
}

/// PyTorch SGD param groups (a learning-rate multiplier, decay on or off) as one SGD per group,
/// each seeing only its group's gradients.
struct GroupedSgd<F: Float> {
    groups: Vec<(Sgd<F>, f64, Vec<ParamId>)>,
}

impl<F: Float> GroupedSgd<F> {
    fn new(case: &Case, store: &ParamStore<F>) -> Self {
        let groups = case
            .groups
            .iter()
            .map(|g| {
                let config = SgdConfig {
                    momentum: case.momentum,
                    nesterov: case.nesterov,
                    weight_decay: if g.decay { case.weight_decay } else { 0.0 },
                };
                let ids = g.params.iter().map(|n| store.id(n).unwrap()).collect();
                (Sgd::new(config).unwrap(), g.lr_mult, ids)
            })
            .collect();
        Self { groups }
    }
}

impl<F: Float> Optimizer<F> for GroupedSgd<F> {
    fn step(&mut self, store: &mut ParamStore<F>, grads: &Grads<F>, lr: f64) {
        for (opt, lr_mult, ids) in &mut self.groups {
            // Other groups' parameters are frozen for this call, so this SGD skips them.
            let others: Vec<ParamId> = store.ids().filter(|id| !ids.contains(id)).collect();
            for &id in &others {
                store.set_trainable(id, false);
            }
            opt.step(store, grads, lr * *lr_mult);
            for &id in &others {
                store.set_trainable(id, true);
            }
        }
    }
    fn steps(&self) -> u64 {
        self.groups[0].0.steps()
    }
    fn state_bytes(&self) -> usize {
        self.groups.iter().map(|g| g.0.state_bytes()).sum()
    }
    fn state(&self) -> Vec<(String, ArrayD<F>)> {
        let mut out: Vec<_> = self
            .groups
            .iter()
            .flat_map(|g| g.0.state())
            .filter(|(n, _)| n != "step")
            .collect();
        out.push((
            "step".to_string(),
            ArrayD::from_elem(IxDyn(&[]), F::of(self.steps() as f64)),
        ));
        out
    }
    fn load_state(
        &mut self,
        store: &ParamStore<F>,
        state: Vec<(String, ArrayD<F>)>,
    ) -> tunelab::Result<()> {
        let step = state.iter().find(|(n, _)| n == "step").unwrap().1.clone();
        for (opt, _, ids) in &mut self.groups {
            let mine: Vec<_> = state
                .iter()
                .filter(|(n, _)| {
                    n == "step"
                        || ids
                            .iter()
                            .any(|&id| n.starts_with(&format!("{}.", store.name(id))))
                })
                .cloned()
                .collect();
            opt.load_state(store, mine)?;
            assert_eq!(opt.state().last().unwrap().1, step);
        }
        Ok(())
    }
}

/// Runs `case` from step `from` to the end, comparing against PyTorch after every step. Returns
/// the report lines and the worst difference seen.
fn replay<F: Float>(
    fx: &Fixture,
    case: &Case,
    store: &mut ParamStore<F>,
    opt: &mut dyn Optimizer<F>,
    from: usize,
    tol: f64,
) -> (String, f64, bool) {
    let schedule = case.schedule.to_schedule();
    let mut report = String::new();
    let mut worst = 0.0f64;
    let mut ok = true;
    for step in from..fx.steps {
        let lr = schedule.lr(case.lr, step);
        for (gi, g) in case.groups.iter().enumerate() {
            let want = case.lrs[step][gi];
            if !abs_diff_eq!(lr * g.lr_mult, want, epsilon = TOL_LR) {
                ok = false;
                let _ = writeln!(
                    report,
                    "NOT OK {} step {step} group {gi} lr {} vs torch {want}",
                    case.name,
                    lr * g.lr_mult
                );
            }
        }
        let grads = step_grads(fx, store, step);
        opt.step(store, &grads, lr);
        for p in &fx.params {
            let id = store.id(&p.name).unwrap();
            let (same, d) = compare(
                &flat(store.value(id)),
                &case.params_after[step][&p.name],
                tol,
            );
            worst = worst.max(d);
            let verdict = if same { "OK    " } else { "NOT OK" };
            ok &= same;
            let _ = writeln!(
                report,
                "{verdict} {:<28} step {step} {:<7} max diff {d:.3e}",
                case.name, p.name
            );
        }
    }
    (report, worst, ok)
}

#[test]
fn golden_optimizers_match_pytorch_every_step() {
    let fx = fixture();
    println!(
        "optim golden: torch {}, transformers {}",
        fx.torch_version, fx.transformers_version
    );
    let mut report = String::new();
    let mut all_ok = true;
    for case in &fx.cases {
        let mut store = store_of::<f64>(&fx);
        let mut opt = optimizer_of(case, &store);
        let (r, worst, ok) = replay(&fx, case, &mut store, opt.as_mut(), 0, TOL);
        report += &r;
        all_ok &= ok;

        // The state at the end matches PyTorch's, name for name.
        let state: HashMap<String, ArrayD<f64>> = opt.state().into_iter().collect();
        assert_eq!(
            state["step"].iter().next().copied(),
            Some(fx.steps as f64),
            "{}: step count",
            case.name
        );
        let mut state_worst = 0.0f64;
        let mut names: Vec<&String> = case.state_after.keys().collect();
        names.sort();
        for name in names {
            let want = &case.state_after[name];
            let have = state
                .get(name)
                .unwrap_or_else(|| panic!("{}: tunelab has no state {name}", case.name));
            let want: Vec<f64> = match want {
                serde_json::Value::Array(v) => v.iter().map(|x| x.as_f64().unwrap()).collect(),
                x => vec![x.as_f64().unwrap()],
            };
            let (same, d) = compare(&flat(have), &want, TOL);
            state_worst = state_worst.max(d);
            all_ok &= same;
            let verdict = if same { "OK    " } else { "NOT OK" };
            let _ = writeln!(
                report,
                "{verdict} {:<28} state  {name:<22} max diff {d:.3e}",
                case.name
            );
        }
        assert_eq!(
            state.len(),
            case.state_after.len() + 1,
            "{}: tunelab keeps state PyTorch does not: {:?}",
            case.name,
            state.keys().collect::<Vec<_>>()
        );
        let _ = writeln!(
            report,
            "       {:<28} worst param diff {worst:.3e}, worst state diff {state_worst:.3e}",
            case.name
        );
    }
    println!("{report}");
    assert!(all_ok, "tunelab differs from PyTorch:\n{report}");
}

#[test]
fn golden_resume_from_saved_state_matches_uninterrupted() {
    // Stop halfway, save the optimizer state, build a fresh optimizer, load it, carry on:
    // every later step must still match PyTorch's uninterrupted run.
    let fx = fixture();
    let half = fx.steps / 2;
    let mut report = String::new();
    let mut all_ok = true;
    for case in &fx.cases {
        let mut store = store_of::<f64>(&fx);
        let mut opt = optimizer_of(case, &store);
        let schedule = case.schedule.to_schedule();
        for step in 0..half {
            let grads = step_grads(&fx, &store, step);
            opt.step(&mut store, &grads, schedule.lr(case.lr, step));
        }
        let saved = opt.state();
        let bytes = opt.state_bytes();
        let mut resumed = optimizer_of(case, &store);
        resumed.load_state(&store, saved).unwrap();
        assert_eq!(resumed.steps(), half as u64, "{}", case.name);
        assert_eq!(resumed.state_bytes(), bytes, "{}", case.name);
        let (r, _, ok) = replay(&fx, case, &mut store, resumed.as_mut(), half, TOL);
        report += &r;
        all_ok &= ok;
    }
    println!("{report}");
    assert!(all_ok, "resumed run differs from PyTorch:\n{report}");
}

#[test]
fn golden_f32_tracks_pytorch_f64() {
    // Training runs in f32: the same steps stay within f32 rounding of PyTorch's f64.
    let fx = fixture();
    let mut report = String::new();
    let mut all_ok = true;
    for case in &fx.cases {
        let mut store = store_of::<f32>(&fx);
        let mut opt = optimizer_of(case, &store);
        let (r, _, ok) = replay(&fx, case, &mut store, opt.as_mut(), 0, 1e-5);
        report += &r;
        all_ok &= ok;
    }
    assert!(all_ok, "f32 run drifts from PyTorch f64:\n{report}");
}

#[test]
fn golden_schedules_match_transformers() {
    let fx = fixture();
    let mut report = String::new();
    let mut all_ok = true;
    for t in &fx.schedules {
        let s = t.schedule.to_schedule();
        let factors: Vec<f64> = (0..t.factors.len()).map(|step| s.factor(step)).collect();
        let (same, d) = compare(&factors, &t.factors, TOL_LR);
        all_ok &= same;
        let verdict = if same { "OK    " } else { "NOT OK" };
        let _ = writeln!(
            report,
            "{verdict} {:?} over {} steps max diff {d:.3e}",
            s,
            t.factors.len()
        );
    }
    println!("{report}");
    assert!(all_ok, "schedules differ from transformers:\n{report}");
}

#[test]
fn golden_clip_grad_norm_matches_pytorch() {
    let fx = fixture();
    let mut report = String::new();
    let mut all_ok = true;
    for c in &fx.clip {
        let store = store_of::<f64>(&fx);
        let mut grads = step_grads(&fx, &store, c.step);
        let norm = clip_grad_norm(&mut grads, c.max_norm).unwrap();
        let d = (norm - c.total_norm).abs();
        all_ok &= abs_diff_eq!(norm, c.total_norm, epsilon = TOL);
        let _ = writeln!(
            report,
            "max_norm {} total norm max diff {d:.3e}",
            c.max_norm
        );
        for (name, want) in &c.clipped {
            let g = grads.get(store.id(name).unwrap()).unwrap();
            let (same, d) = compare(&flat(g), want, TOL);
            all_ok &= same;
            let _ = writeln!(report, "max_norm {} {name:<7} max diff {d:.3e}", c.max_norm);
        }
    }
    println!("{report}");
    assert!(all_ok, "clipping differs from PyTorch:\n{report}");
}

// ---------------------------------------------------------------------------------------------
// Worked by hand

/// One trainable parameter `w` with gradient `g`.
fn one(w: ArrayD<f64>, g: ArrayD<f64>) -> (ParamStore<f64>, ParamId, Grads<f64>) {
    let mut store = ParamStore::new();
    let id = store.add("w", w, true).unwrap();
    let grads = grads_of(&store, &[(id, g)]);
    (store, id, grads)
}

#[test]
fn adamw_first_step_moves_each_param_by_about_lr_sign_g() {
    // m_hat = g, v_hat = g^2 on step 1, so the update is lr * g / (|g| + eps) ~ lr * sign(g),
    // whatever the gradient's size: 1e-3 and 50 move the same distance.
    let w0 = array![1.0, -2.0, 0.5, 3.0].into_dyn();
    let g = array![0.3, -50.0, 1e-3, 0.0].into_dyn();
    let (mut store, id, grads) = one(w0.clone(), g.clone());
    let lr = 1e-2;
    let mut opt = AdamW::new(AdamWConfig {
        weight_decay: 0.0,
        ..AdamWConfig::default()
    })
    .unwrap();
    opt.step(&mut store, &grads, lr);
    let w = store.value(id);
    let expected = [1.0 - lr, -2.0 + lr, 0.5 - lr, 3.0]; // g = 0 does not move
    for i in 0..4 {
        let exact = w0[i] - lr * g[i] / (f64::abs(g[i]) + 1e-8);
        assert!(
            abs_diff_eq!(w[i], exact, epsilon = 1e-15),
            "element {i}: {} vs {exact}",
            w[i]
        );
        assert!(
            abs_diff_eq!(w[i], expected[i], epsilon = 1e-7),
            "element {i}: {} vs {}",
            w[i],
            expected[i]
        );
    }
    // Moments after one step: m = (1 - beta1) g, v = (1 - beta2) g^2.
    let m = opt.exp_avg(id).unwrap();
    let v = opt.exp_avg_sq(id).unwrap();
    assert_abs_diff_eq!(m[1], 0.1 * -50.0, epsilon = 1e-12);
    assert_abs_diff_eq!(v[1], 0.001 * 2500.0, epsilon = 1e-12);
    assert_eq!(opt.param_steps(id), 1);
}

#[test]
fn adamw_two_steps_by_hand_with_decoupled_decay() {
    // One scalar, lr 0.1, wd 0.5, beta1 0.5, beta2 0.75, eps 0: every number below by hand.
    let (mut store, id, _) = one(array![2.0].into_dyn(), array![0.0].into_dyn());
    let cfg = AdamWConfig {
        beta1: 0.5,
        beta2: 0.75,
        eps: 0.0,
        weight_decay: 0.5,
    };
    let mut opt = AdamW::new(cfg).unwrap();
    // step 1, g = 4: w = 2 * (1 - 0.05) = 1.9; m = 2, v = 4; m_hat = 4, v_hat = 16;
    //   w = 1.9 - 0.1 * 4 / 4 = 1.8
    let g1 = grads_of(&store, &[(id, array![4.0].into_dyn())]);
    opt.step(&mut store, &g1, 0.1);
    assert_abs_diff_eq!(store.value(id)[0], 1.8, epsilon = 1e-15);
    // step 2, g = -2: w = 1.8 * 0.95 = 1.71; m = 0.5 * 2 - 1 = 0; v = 0.75 * 4 + 0.25 * 4 = 4;
    //   m_hat = 0 so only decay acts: w = 1.71
    let g2 = grads_of(&store, &[(id, array![-2.0].into_dyn())]);
    opt.step(&mut store, &g2, 0.1);
    assert_abs_diff_eq!(store.value(id)[0], 1.71, epsilon = 1e-15);
    assert_eq!(opt.exp_avg(id).unwrap()[0], 0.0);
    assert_eq!(opt.exp_avg_sq(id).unwrap()[0], 4.0);
}

#[test]
fn adamw_lr_multiplier_and_no_decay() {
    // LoRA+: B's learning rate is 16x A's. Excluded from decay: the bias does not shrink.
    let mut store = ParamStore::<f64>::new();
    let a = store
        .add("lora_A.weight", array![1.0].into_dyn(), true)
        .unwrap();
    let b = store
        .add("lora_B.weight", array![1.0].into_dyn(), true)
        .unwrap();
    let bias = store
        .add("c_attn.bias", array![1.0].into_dyn(), true)
        .unwrap();
    let g = array![1.0].into_dyn();
    let grads = grads_of(&store, &[(a, g.clone()), (b, g.clone()), (bias, g)]);
    let mut opt = AdamW::new(AdamWConfig {
        eps: 0.0,
        weight_decay: 0.1,
        ..AdamWConfig::default()
    })
    .unwrap();
    opt.set_lr_multiplier(b, 16.0).unwrap();
    assert_eq!(opt.exclude_from_decay_by_name(&store), 1);
    assert!(opt.set_lr_multiplier(a, f64::NAN).is_err());
    opt.step(&mut store, &grads, 1e-3);
    assert_abs_diff_eq!(
        store.value(a)[0],
        1.0 * (1.0 - 1e-4) - 1e-3,
        epsilon = 1e-15
    );
    assert_abs_diff_eq!(
        store.value(b)[0],
        1.0 * (1.0 - 16e-4) - 16e-3,
        epsilon = 1e-15
    );
    assert_abs_diff_eq!(store.value(bias)[0], 1.0 - 1e-3, epsilon = 1e-15);
    assert_eq!(
        opt.options(bias),
        ParamOptions {
            lr_mult: 1.0,
            weight_decay: false
        }
    );
}

#[test]
fn no_decay_names() {
    for name in [
        "h.0.attn.c_attn.bias",
        "h.0.ln_1.weight",
        "ln_f.weight",
        "bert.encoder.layer.0.attention.output.LayerNorm.weight",
        "model.layers.0.input_layernorm.weight",
    ] {
        assert!(is_no_decay_name(name), "{name}");
    }
    for name in [
        "h.0.attn.c_attn.weight",
        "wte.weight",
        "h.0.attn.c_attn.lora_B.weight",
    ] {
        assert!(!is_no_decay_name(name), "{name}");
    }
}

#[test]
fn sgd_momentum_by_hand() {
    // Constant gradient 1, lr 0.1, momentum 0.9: buf = 1, 1.9, 2.71; w = 0.9, 0.71, 0.439.
    let (mut store, id, grads) = one(array![1.0].into_dyn(), array![1.0].into_dyn());
    let mut opt = Sgd::new(SgdConfig {
        momentum: 0.9,
        ..SgdConfig::default()
    })
    .unwrap();
    for (buf, w) in [(1.0, 0.9), (1.9, 0.71), (2.71, 0.439)] {
        opt.step(&mut store, &grads, 0.1);
        assert_abs_diff_eq!(opt.momentum_buffer(id).unwrap()[0], buf, epsilon = 1e-15);
        assert_abs_diff_eq!(store.value(id)[0], w, epsilon = 1e-15);
    }
    // Nesterov looks ahead: u = g + 0.9 * buf = 1.9, then 1 + 0.9 * 1.9 = 2.71.
    let (mut store, id, grads) = one(array![1.0].into_dyn(), array![1.0].into_dyn());
    let mut opt = Sgd::new(SgdConfig {
        momentum: 0.9,
        nesterov: true,
        ..SgdConfig::default()
    })
    .unwrap();
    for w in [0.81, 0.539] {
        opt.step(&mut store, &grads, 0.1);
        assert_abs_diff_eq!(store.value(id)[0], w, epsilon = 1e-15);
    }
    // Weight decay is added to the gradient: g = 0, w = 2, wd 0.5 -> w -= 0.1 * 1.
    let (mut store, id, grads) = one(array![2.0].into_dyn(), array![0.0].into_dyn());
    let mut opt = Sgd::new(SgdConfig {
        weight_decay: 0.5,
        ..SgdConfig::default()
    })
    .unwrap();
    opt.step(&mut store, &grads, 0.1);
    assert_abs_diff_eq!(store.value(id)[0], 1.9, epsilon = 1e-15);
    assert_eq!(opt.state_bytes(), 0); // no momentum, no buffer
    assert!(Sgd::<f64>::new(SgdConfig {
        nesterov: true,
        ..SgdConfig::default()
    })
    .is_err());
}

#[test]
fn clip_grad_norm_three_four_five() {
    let (store, id, mut grads) = one(array![0.0, 0.0].into_dyn(), array![3.0, 4.0].into_dyn());
    assert_eq!(grad_norm(&grads), 5.0);
    assert_eq!(grad_norms(&store, &grads), [("w".to_string(), 5.0)]);
    // Under the limit: untouched, the norm is still reported.
    assert_eq!(clip_grad_norm(&mut grads, 10.0).unwrap(), 5.0);
    assert_eq!(grads.get(id).unwrap().as_slice().unwrap(), &[3.0, 4.0]);
    // Over: scaled by 1 / (5 + 1e-6), to norm 1 (a hair under).
    assert_eq!(clip_grad_norm(&mut grads, 1.0).unwrap(), 5.0);
    let c = 1.0 / (5.0 + CLIP_EPS);
    assert_eq!(
        grads.get(id).unwrap().as_slice().unwrap(),
        &[3.0 * c, 4.0 * c]
    );
    assert_abs_diff_eq!(grad_norm(&grads), 1.0, epsilon = 1e-6);
    assert!(grad_norm(&grads) < 1.0);
    assert!(clip_grad_norm(&mut grads, -1.0).is_err());
}

#[test]
fn warmup_cosine_endpoints() {
    let s = Schedule::Cosine {
        warmup_steps: 100,
        total_steps: 1000,
    };
    let base = 5e-4;
    assert_eq!(s.lr(base, 0), 0.0); // the first step does not move an Adam model at all
    assert_eq!(s.lr(base, 50), base / 2.0);
    assert_eq!(s.lr(base, 100), base); // peak at the end of warmup
    assert_abs_diff_eq!(s.lr(base, 550), base / 2.0, epsilon = 1e-18); // half way down the cosine
    assert_abs_diff_eq!(s.lr(base, 1000), 0.0, epsilon = 1e-18); // zero at the end
    let lin = Schedule::Linear {
        warmup_steps: 100,
        total_steps: 1000,
    };
    assert_eq!(lin.lr(base, 100), base);
    assert_eq!(lin.lr(base, 1000), 0.0);
    assert_eq!(lin.lr(base, 2000), 0.0);
}

#[test]
fn frozen_param_stays_bit_identical_and_has_no_state() {
    for which in ["adamw", "sgd"] {
        let mut store = ParamStore::<f32>::new();
        let w = store
            .add("w", array![0.1f32, -0.7, 3.3].into_dyn(), true)
            .unwrap();
        let emb = store
            .add(
                "wte.weight",
                array![[0.1f32, 1e-30], [-2.5, 7.0]].into_dyn(),
                true,
            )
            .unwrap();
        let before: Vec<u32> = store.value(emb).iter().map(|x| x.to_bits()).collect();
        // Gradients for both (taken while trainable), then freeze: the optimizer must still
        // leave the frozen one alone, even though a gradient is there.
        let grads = grads_of(
            &store,
            &[
                (w, array![1.0f32, -1.0, 0.5].into_dyn()),
                (emb, array![[1.0f32, 1.0], [1.0, 1.0]].into_dyn()),
            ],
        );
        store.set_trainable(emb, false);
        let mut opt: Box<dyn Optimizer<f32>> = if which == "adamw" {
            Box::new(AdamW::new(AdamWConfig::default()).unwrap())
        } else {
            Box::new(
                Sgd::new(SgdConfig {
                    momentum: 0.9,
                    weight_decay: 0.1,
                    ..SgdConfig::default()
                })
                .unwrap(),
            )
        };
        for _ in 0..5 {
            opt.step(&mut store, &grads, 0.1);
        }
        let after: Vec<u32> = store.value(emb).iter().map(|x| x.to_bits()).collect();
        assert_eq!(before, after, "{which}: frozen parameter changed");
        assert_ne!(
            store.value(w)[0],
            0.1,
            "{which}: trainable parameter did not move"
        );
        let names: Vec<String> = opt.state().into_iter().map(|(n, _)| n).collect();
        assert!(
            names.iter().all(|n| !n.starts_with("wte")),
            "{which}: state for a frozen parameter: {names:?}"
        );
        let per_tensor = if which == "adamw" { 2 } else { 1 };
        assert_eq!(
            opt.state_bytes(),
            per_tensor * 3 * 4,
            "{which}: state bytes"
        );
    }
}

#[test]
fn state_names_and_load_errors() {
    let mut store = ParamStore::<f64>::new();
    let w = store
        .add("h.0.mlp.c_fc.weight", array![[1.0, 2.0]].into_dyn(), true)
        .unwrap();
    let grads = grads_of(&store, &[(w, array![[0.5, -0.5]].into_dyn())]);
    let mut opt = AdamW::new(AdamWConfig::default()).unwrap();
    opt.step(&mut store, &grads, 1e-3);
    let state = opt.state();
    let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "h.0.mlp.c_fc.weight.exp_avg",
            "h.0.mlp.c_fc.weight.exp_avg_sq",
            "h.0.mlp.c_fc.weight.step",
            "step"
        ]
    );
    assert_eq!(state[3].1.ndim(), 0);

    let fresh = || AdamW::<f64>::new(AdamWConfig::default()).unwrap();
    // A moment of the wrong shape.
    let mut bad = state.clone();
    bad[0].1 = ArrayD::zeros(IxDyn(&[2, 1]));
    let err = fresh().load_state(&store, bad).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    assert!(err.to_string().contains("(2, 1)"), "{err}");
    // A parameter the store does not have.
    let mut bad = state.clone();
    bad[0].0 = "h.9.mlp.c_fc.weight.exp_avg".into();
    assert!(matches!(
        fresh().load_state(&store, bad).unwrap_err(),
        Error::Param(..)
    ));
    // An unknown key, a missing step, half a pair, a fractional count.
    let mut bad = state.clone();
    bad[0].0 = "h.0.mlp.c_fc.weight.momentum_buffer".into();
    assert!(fresh().load_state(&store, bad).is_err());
    assert!(fresh().load_state(&store, state[..3].to_vec()).is_err());
    assert!(fresh()
        .load_state(&store, vec![state[0].clone(), state[3].clone()])
        .is_err());
    let mut bad = state.clone();
    bad[3].1 = ArrayD::from_elem(IxDyn(&[]), 1.5);
    assert!(fresh().load_state(&store, bad).is_err());
    // A failed load leaves the optimizer as it was.
    let mut opt2 = fresh();
    opt2.load_state(&store, state.clone()).unwrap();
    let mut bad = state.clone();
    bad[1].1 = ArrayD::zeros(IxDyn(&[3]));
    assert!(opt2.load_state(&store, bad).is_err());
    assert_eq!(opt2.state(), state);

    // SGD: momentum buffers only.
    let mut sgd = Sgd::new(SgdConfig {
        momentum: 0.9,
        ..SgdConfig::default()
    })
    .unwrap();
    sgd.step(&mut store, &grads, 0.1);
    let s = sgd.state();
    assert_eq!(s[0].0, "h.0.mlp.c_fc.weight.momentum_buffer");
    assert_eq!(s[1].0, "step");
    let mut plain = Sgd::<f64>::new(SgdConfig::default()).unwrap();
    assert!(plain.load_state(&store, s).is_err());
}
