use super::{assert_close, randn, rng};
use crate::causal_attention::causal_attention;
use ndarray::Array2;
use tunelab::autodiff::AttnMask;
use tunelab::{ParamStore, Tape};

fn tunelab(q: &Array2<f64>, k: &Array2<f64>, v: &Array2<f64>) -> Array2<f64> {
    let store = ParamStore::<f64>::new();
    let mut tape = Tape::new(&store);
    let as4 = |x: &Array2<f64>, tape: &mut Tape<'_, f64>| {
        let (r, c) = x.dim();
        tape.constant(
            x.clone()
                .into_shape_with_order((1, 1, r, c))
                .unwrap()
                .into_dyn(),
        )
    };
    let (qv, kv, vv) = (as4(q, &mut tape), as4(k, &mut tape), as4(v, &mut tape));
    let y = tape.attention(qv, kv, vv, &AttnMask::causal()).unwrap();
    let (t, hs) = q.dim();
    tape.value(y)
        .to_owned()
        .into_shape_with_order((t, hs))
        .unwrap()
}

#[test]
fn matches_tunelab() {
    let mut rng = rng(1);
    // (T, S): plain causal, and S − T extra prefix keys that every query sees.
    for (t, s) in [(4, 4), (1, 1), (3, 6), (1, 3)] {
        let q = randn((t, 4), &mut rng);
        let k = randn((s, 4), &mut rng);
        let v = randn((s, 4), &mut rng);
        let what = format!("attention with T = {t}, S = {s}");
        assert_close(
            &what,
            &causal_attention(&q, &k, &v),
            &tunelab(&q, &k, &v),
            1e-12,
        );
    }
}

#[test]
fn first_query_sees_only_the_first_key() {
    let mut rng = rng(2);
    let (q, k, v) = (
        randn((3, 2), &mut rng),
        randn((3, 2), &mut rng),
        randn((3, 2), &mut rng),
    );
    let y = causal_attention(&q, &k, &v);
    assert_close(
        "y[0] = v[0]",
        &y.row(0).to_owned(),
        &v.row(0).to_owned(),
        1e-12,
    );
}
