use super::{assert_close, randn, rng, tiny_gpt};
use crate::soft_prompt::{extend_mask, prepend_prompt, strip_prompt};
use ndarray::{s, Array2, Array3, Ix2, Ix3};
use rand::Rng;
use tunelab::nn::Hooks;
use tunelab::peft::prompt::{Prompt, PromptInit};
use tunelab::Tape;

#[test]
fn prepend_matches_tunelab() {
    let (model, mut store) = tiny_gpt(1);
    let prompt = Prompt::apply(&model, &mut store, 3, PromptInit::Random, 1).unwrap();
    let mut rng = rng(2);
    let p = randn(store.value(prompt.prompt).raw_dim(), &mut rng);
    store.set_value(prompt.prompt, p.clone()).unwrap();
    let x: Array3<f64> = randn((2, 4, model.config.d_model), &mut rng);
    let mut tape = Tape::new(&store);
    let xv = tape.constant(x.clone().into_dyn());
    let y = prompt.embeddings(&mut tape, xv).unwrap();
    let want = tape
        .value(y)
        .to_owned()
        .into_dimensionality::<Ix3>()
        .unwrap();
    let p = p.into_dimensionality::<Ix2>().unwrap();
    assert_close(
        "embeddings with the soft prompt",
        &prepend_prompt(&p, &x),
        &want,
        1e-12,
    );
}

#[test]
fn mask_and_strip() {
    let mut rng = rng(3);
    let mask = Array2::from_shape_fn((3, 5), |_| rng.random_bool(0.6));
    let got = extend_mask(&mask, 2);
    assert_eq!(got.dim(), (3, 7), "mask shape");
    assert!(
        got.slice(s![.., ..2]).iter().all(|&m| m),
        "the prompt positions are real"
    );
    assert_eq!(got.slice(s![.., 2..]), mask, "the tokens keep their mask");
    let h = randn((2, 7, 4), &mut rng);
    let stripped = strip_prompt(&h, 3);
    assert_close(
        "stripped output",
        &stripped,
        &h.slice(s![.., 3.., ..]).to_owned(),
        1e-15,
    );
}
