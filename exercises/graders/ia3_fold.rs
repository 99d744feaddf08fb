use super::{assert_close, randn, rng, tiny_gpt};
use crate::ia3_fold::{fold_input_scale, fold_output_scale};
use ndarray::{concatenate, Array1, Array2, Axis, Ix1, Ix2};
use tunelab::nn::Layout;
use tunelab::peft::ia3::{self, Ia3};

fn matrix(a: &ndarray::ArrayD<f64>) -> Array2<f64> {
    a.clone().into_dimensionality::<Ix2>().unwrap()
}

fn vector(a: &ndarray::ArrayD<f64>) -> Array1<f64> {
    a.clone().into_dimensionality::<Ix1>().unwrap()
}

#[test]
fn folds_match_tunelab_on_gpt2() {
    let (model, mut store) = tiny_gpt(2);
    let ia3 = Ia3::apply(&model, &mut store).unwrap();
    let mut rng = rng(3);
    // Trained vectors: anything but ones.
    for block in &ia3.blocks {
        for id in [block.l_k, block.l_v, block.l_ff] {
            let shape = store.value(id).raw_dim();
            let value = randn(shape, &mut rng).mapv(|x| 1.0 + 0.5 * x);
            store.set_value(id, value).unwrap();
        }
    }
    let before = store.clone();
    ia3::fold(&ia3, &mut store).unwrap();
    for (lin, block) in ia3.linears.iter().zip(&ia3.blocks) {
        assert!(
            matches!(lin.layout, Layout::InOut),
            "GPT-2's c_attn is (in, out)"
        );
        let w = matrix(before.value(lin.weight));
        let b = vector(before.value(lin.bias.expect("c_attn has a bias")));
        // The fused [q | k | v] output: queries untouched.
        let c = w.ncols() / 3;
        let l = concatenate![
            Axis(0),
            Array1::ones(c),
            vector(before.value(block.l_k)),
            vector(before.value(block.l_v))
        ];
        let (got_w, got_b) = fold_output_scale(&w, &b, &l);
        assert_close(
            &format!("{} folded weight", lin.module),
            &got_w,
            &matrix(store.value(lin.weight)),
            1e-12,
        );
        assert_close(
            &format!("{} folded bias", lin.module),
            &got_b,
            &vector(store.value(lin.bias.unwrap())),
            1e-12,
        );
        let proj = &block.proj;
        let got = fold_input_scale(
            &matrix(before.value(proj.weight)),
            &vector(before.value(block.l_ff)),
        );
        assert_close(
            &format!("{} folded weight", proj.module),
            &got,
            &matrix(store.value(proj.weight)),
            1e-12,
        );
    }
}

#[test]
fn folded_weights_compute_the_rescaled_activations() {
    let mut rng = rng(9);
    let (d_in, d_out, n) = (5, 3, 4);
    let x = randn((n, d_in), &mut rng);
    let w = randn((d_in, d_out), &mut rng);
    let b = randn(d_out, &mut rng);
    let l_out = randn(d_out, &mut rng);
    let (w2, b2) = fold_output_scale(&w, &b, &l_out);
    assert_close(
        "x W' + b' against l ⊙ (x W + b)",
        &(x.dot(&w2) + &b2),
        &((x.dot(&w) + &b) * &l_out),
        1e-12,
    );
    let l_in = randn(d_in, &mut rng);
    assert_close(
        "h W' against (l ⊙ h) W",
        &x.dot(&fold_input_scale(&w, &l_in)),
        &(&x * &l_in).dot(&w),
        1e-12,
    );
}
