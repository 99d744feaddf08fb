use super::tiny_gpt;
use crate::left_padded_generation::generate_left_padded;
use ndarray::{Array2, Ix3};
use tunelab::nn::generate::{generate_uncached, GenerateOptions};
use tunelab::nn::{Input, NoHooks, Transformer};
use tunelab::{ParamStore, Tape};

/// tunelab's model behind the exercise's `next_logits`: the logits at the last column.
fn next_logits<'a>(
    model: &'a Transformer,
    store: &'a ParamStore<f64>,
    calls: &'a mut usize,
) -> impl FnMut(&Array2<usize>, &Array2<bool>, &Array2<usize>) -> Array2<f64> + 'a {
    move |ids, mask, positions| {
        *calls += 1;
        let mut tape = Tape::inference(store);
        let input = Input::new(ids.view())
            .with_mask(mask.view())
            .with_positions(positions.view());
        let hidden = model.forward(&mut tape, &NoHooks, &input).unwrap();
        let t = ids.ncols();
        let last = tape.slice(hidden, 1, t - 1, t).unwrap();
        let logits = model.lm_logits(&mut tape, &NoHooks, last).unwrap();
        let logits = tape
            .value(logits)
            .to_owned()
            .into_dimensionality::<Ix3>()
            .unwrap();
        logits.index_axis_move(ndarray::Axis(1), 0)
    }
}

#[test]
fn the_batch_generates_what_each_prompt_generates_alone() {
    let (model, store) = tiny_gpt(2);
    let prompts = vec![vec![5, 6, 7, 8, 9], vec![3], vec![11, 2, 30], vec![4, 4]];
    let n = 6;
    let mut calls = 0;
    let got = generate_left_padded(&prompts, 0, n, &mut next_logits(&model, &store, &mut calls));
    assert_eq!(calls, n, "one call of next_logits per new token");
    let opts = GenerateOptions {
        max_new_tokens: n,
        ..GenerateOptions::default()
    };
    for (prompt, got) in prompts.iter().zip(&got) {
        let want = generate_uncached(
            &model,
            &store,
            &NoHooks,
            std::slice::from_ref(prompt),
            &opts,
        )
        .unwrap()
        .remove(0);
        assert_eq!(
            got, &want,
            "prompt {prompt:?}: batched greedy tokens against the prompt alone"
        );
    }
}

#[test]
fn the_pad_id_does_not_matter() {
    let (model, store) = tiny_gpt(1);
    let prompts = vec![vec![1, 2, 3, 4], vec![7]];
    let (mut a, mut b) = (0, 0);
    let with_zero = generate_left_padded(&prompts, 0, 4, &mut next_logits(&model, &store, &mut a));
    let with_other =
        generate_left_padded(&prompts, 31, 4, &mut next_logits(&model, &store, &mut b));
    assert_eq!(
        with_zero, with_other,
        "pads are masked, so their id must not change the output"
    );
}
