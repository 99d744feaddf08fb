//! The transformer's contracts: padding invariance, the causal mask, the presets' wiring, and
//! gradients of the whole model against finite differences.

use approx::{abs_diff_eq, assert_abs_diff_eq, assert_abs_diff_ne};
use ndarray::{array, s, Array2, ArrayD};
use tunelab::nn::heads::pool;
use tunelab::nn::{Config, Input, NoHooks, Pooling, SequenceHead, Transformer};
use tunelab::{Grads, ParamStore, Tape};

fn tiny(config: Config) -> (Transformer, ParamStore<f64>) {
    let mut store = ParamStore::new();
    let mut config = config;
    config.dropout = 0.0;
    let model = Transformer::new(config, &mut store, 7).unwrap();
    (model, store)
}

fn gpt() -> (Transformer, ParamStore<f64>) {
    tiny(Config::gpt(23, 8, 2, 2, 16))
}

fn bert() -> (Transformer, ParamStore<f64>) {
    tiny(Config::bert(23, 8, 2, 2, 16))
}

fn logits(model: &Transformer, store: &ParamStore<f64>, input: &Input<'_>) -> ArrayD<f64> {
    let mut tape = Tape::inference(store);
    let h = model.forward(&mut tape, &NoHooks, input).unwrap();
    let l = model.lm_logits(&mut tape, &NoHooks, h).unwrap();
    tape.value(l).to_owned()
}

#[test]
fn pad_right_gives_the_same_logits_for_real_tokens() {
    for (model, store) in [gpt(), bert()] {
        let alone = array![[3usize, 7, 1, 9, 4]];
        let want = logits(&model, &store, &Input::new(alone.view()));
        let padded = array![[3usize, 7, 1, 9, 4, 0, 0, 0], [5, 6, 2, 2, 8, 1, 3, 4]];
        let mask = Array2::from_shape_fn((2, 8), |(i, j)| i == 1 || j < 5);
        let got = logits(
            &model,
            &store,
            &Input::new(padded.view()).with_mask(mask.view()),
        );
        let got = got.slice(s![0..1, 0..5, ..]).into_dyn();
        assert!(
            abs_diff_eq!(got, want, epsilon = 1e-10),
            "{:?}: padded logits differ\n{got}\nalone\n{want}",
            model.config.arch
        );
    }
}

#[test]
fn pad_left_with_shifted_positions_gives_the_same_logits() {
    let (model, store) = gpt();
    let alone = array![[3usize, 7, 1]];
    let want = logits(&model, &store, &Input::new(alone.view()));
    let padded = array![[0usize, 0, 3, 7, 1]];
    let mask = array![[false, false, true, true, true]];
    let positions = array![[0usize, 0, 0, 1, 2]];
    let got = logits(
        &model,
        &store,
        &Input::new(padded.view())
            .with_mask(mask.view())
            .with_positions(positions.view()),
    );
    assert_abs_diff_eq!(got.slice(s![.., 2.., ..]).into_dyn(), want, epsilon = 1e-10);
    // Without the mask the pads leak into the real tokens: the padding pitfall.
    let leaky = logits(
        &model,
        &store,
        &Input::new(padded.view()).with_positions(positions.view()),
    );
    assert_eq!(leaky.slice(s![.., 2.., ..]).shape(), want.shape());
    crate::common::assert_finite(&leaky);
    crate::common::assert_finite(&want);
    assert_abs_diff_ne!(
        leaky.slice(s![.., 2.., ..]).into_dyn(),
        want,
        epsilon = 1e-6
    );
}

#[test]
fn causal_mask_future_token_cannot_change_past_logits() {
    let (model, store) = gpt();
    let a = array![[3usize, 7, 1, 9, 4, 2]];
    let mut b = a.clone();
    b[[0, 3]] = 11; // change token t+1 = 3
    let (la, lb) = (
        logits(&model, &store, &Input::new(a.view())),
        logits(&model, &store, &Input::new(b.view())),
    );
    assert_eq!(
        la.slice(s![.., ..3, ..]),
        lb.slice(s![.., ..3, ..]),
        "positions 0..=2 must not see token 3"
    );
    assert_eq!(la.shape(), lb.shape());
    crate::common::assert_finite(&la);
    crate::common::assert_finite(&lb);
    assert_abs_diff_ne!(
        la.slice(s![.., 3.., ..]),
        lb.slice(s![.., 3.., ..]),
        epsilon = 1e-6
    );

    // The bidirectional encoder does see it everywhere.
    let (model, store) = bert();
    let (la, lb) = (
        logits(&model, &store, &Input::new(a.view())),
        logits(&model, &store, &Input::new(b.view())),
    );
    assert_eq!(la.shape(), lb.shape());
    crate::common::assert_finite(&la);
    crate::common::assert_finite(&lb);
    assert_abs_diff_ne!(
        la.slice(s![.., ..3, ..]),
        lb.slice(s![.., ..3, ..]),
        epsilon = 1e-6
    );
}

#[test]
fn pad_pooling_picks_the_last_real_token() {
    let (model, store) = gpt();
    let ids = array![[3usize, 7, 1, 0], [2, 2, 2, 2]];
    let mask = array![[true, true, true, false], [true, true, true, true]];
    let mut tape = Tape::inference(&store);
    let h = model
        .forward(
            &mut tape,
            &NoHooks,
            &Input::new(ids.view()).with_mask(mask.view()),
        )
        .unwrap();
    let pooled = pool(
        &mut tape,
        &NoHooks,
        &model,
        Pooling::LastToken,
        h,
        Some(mask.view()),
    )
    .unwrap();
    let hv = tape.value(h);
    let pv = tape.value(pooled);
    assert_eq!(pv.slice(s![0, ..]), hv.slice(s![0, 2, ..]));
    assert_eq!(pv.slice(s![1, ..]), hv.slice(s![1, 3, ..]));
}

#[test]
fn presets_use_hugging_face_names_and_shapes() {
    let (_, store) = gpt();
    for (name, shape) in [
        ("wte.weight", vec![23, 8]),
        ("wpe.weight", vec![16, 8]),
        ("h.0.attn.c_attn.weight", vec![8, 24]),
        ("h.1.mlp.c_proj.weight", vec![32, 8]),
        ("ln_f.bias", vec![8]),
    ] {
        assert_eq!(
            store.value(store.id(name).unwrap()).shape(),
            &shape[..],
            "{name}"
        );
    }
    let (_, store) = bert();
    for (name, shape) in [
        ("embeddings.word_embeddings.weight", vec![23, 8]),
        ("embeddings.token_type_embeddings.weight", vec![2, 8]),
        ("encoder.layer.1.attention.self.query.weight", vec![8, 8]),
        ("encoder.layer.0.intermediate.dense.weight", vec![32, 8]),
        ("encoder.layer.0.output.LayerNorm.weight", vec![8]),
        ("pooler.dense.weight", vec![8, 8]),
        ("cls.predictions.bias", vec![23]),
    ] {
        assert_eq!(
            store.value(store.id(name).unwrap()).shape(),
            &shape[..],
            "{name}"
        );
    }
}

/// The whole model (both presets, with a classification head) against central differences on a
/// sample of elements of every parameter.
#[test]
fn model_gradients_match_finite_differences() {
    for (model, mut store) in [gpt(), bert()] {
        let head =
            SequenceHead::new(&mut store, &model, 3, Pooling::default_for(&model), 1).unwrap();
        let ids = array![[3usize, 7, 1, 9], [4, 2, 0, 0]];
        let mask = array![[true, true, true, true], [true, true, false, false]];
        let loss_of = |store: &ParamStore<f64>, grads: Option<&mut Grads<f64>>| {
            let mut tape = Tape::new(store);
            let input = Input::new(ids.view()).with_mask(mask.view());
            let h = model.forward(&mut tape, &NoHooks, &input).unwrap();
            let logits = head
                .forward(&mut tape, &NoHooks, &model, h, Some(mask.view()))
                .unwrap();
            let cls = tape.cross_entropy(logits, &[2, 0], -100).unwrap();
            let lm = model.lm_logits(&mut tape, &NoHooks, h).unwrap();
            let lm = tape
                .cross_entropy(lm, &[7, 1, 9, -100, 2, -100, -100, -100], -100)
                .unwrap();
            let loss = tape.add(cls, lm).unwrap();
            if let Some(g) = grads {
                tape.backward(loss, g).unwrap();
            }
            tape.scalar(loss).unwrap()
        };
        let mut grads = Grads::new(&store);
        loss_of(&store, Some(&mut grads));
        let mut probe = store.clone();
        let mut worst = 0.0f64;
        for id in store.ids() {
            let n = store.value(id).len();
            let g = grads
                .get(id)
                .cloned()
                .unwrap_or_else(|| ArrayD::zeros(store.value(id).raw_dim()));
            for i in (0..n).step_by(n / 5 + 1) {
                let x0 = store.value(id).as_slice().unwrap()[i];
                // The 0.02-std init leaves tiny pre-LayerNorm variances and a sharply curved loss: at h = 1e-5
                // central differences carry ~4e-9 truncation error (it shrinks as h², checked), so use 1e-6.
                let h = 1e-6;
                probe.get_mut(id).value.as_slice_mut().unwrap()[i] = x0 + h;
                let up = loss_of(&probe, None);
                probe.get_mut(id).value.as_slice_mut().unwrap()[i] = x0 - h;
                let down = loss_of(&probe, None);
                probe.get_mut(id).value.as_slice_mut().unwrap()[i] = x0;
                let numeric = (up - down) / (2.0 * h);
                let a = g.as_slice().unwrap()[i];
                let rel = (a - numeric).abs() / a.abs().max(numeric.abs()).max(1e-3);
                assert!(
                    rel < 1e-6,
                    "{:?} {}[{i}]: analytic {a}, numeric {numeric}",
                    model.config.arch,
                    store.name(id)
                );
                worst = worst.max(rel);
            }
        }
        assert!(worst < 1e-6);
    }
}

#[test]
fn generate_batched_left_padded_equals_one_by_one() {
    use tunelab::nn::generate::{generate, GenerateOptions};
    let (model, store) = gpt();
    let prompts = vec![vec![3usize, 7, 1, 9], vec![5], vec![2, 2]];
    let opts = GenerateOptions {
        max_new_tokens: 6,
        ..Default::default()
    };
    let batched = generate(&model, &store, &NoHooks, &prompts, &opts).unwrap();
    for (p, want) in prompts.iter().zip(&batched) {
        let alone = generate(&model, &store, &NoHooks, std::slice::from_ref(p), &opts).unwrap();
        assert_eq!(
            &alone[0], want,
            "left padding changed the greedy continuation of {p:?}"
        );
        assert_eq!(want.len(), 6);
    }
    // Sampling is seeded: the same seed gives the same text; the end token stops a row.
    let sample = GenerateOptions {
        temperature: 1.0,
        top_k: Some(5),
        seed: 9,
        max_new_tokens: 8,
        ..Default::default()
    };
    let a = generate(&model, &store, &NoHooks, &prompts, &sample).unwrap();
    assert_eq!(
        a,
        generate(&model, &store, &NoHooks, &prompts, &sample).unwrap()
    );
    let eos = batched[0][0];
    let stopped = generate(
        &model,
        &store,
        &NoHooks,
        &prompts[..1],
        &GenerateOptions {
            eos: Some(eos),
            ..opts
        },
    )
    .unwrap();
    assert!(stopped[0].is_empty(), "the first token was the end token");
}
