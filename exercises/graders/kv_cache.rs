use super::{assert_close, randn, rng};
use crate::kv_cache::{attend_incremental, attend_step, KvCache, Projections};
use ndarray::{Array2, Axis, Ix4};
use tunelab::autodiff::AttnMask;
use tunelab::{ParamStore, Tape};

/// Full causal multi-head attention over x (T, C) by tunelab's attention op.
fn tunelab(p: &Projections, x: &Array2<f64>) -> Array2<f64> {
    let (t, c) = x.dim();
    let (nh, hs) = (p.n_head, c / p.n_head);
    // (T, C) → (1, NH, T, HS).
    let heads = |m: Array2<f64>| {
        m.into_shape_with_order((t, nh, hs))
            .unwrap()
            .permuted_axes([1, 0, 2])
            .insert_axis(Axis(0))
            .as_standard_layout()
            .into_owned()
            .into_dyn()
    };
    let store = ParamStore::<f64>::new();
    let mut tape = Tape::new(&store);
    let q = tape.constant(heads(x.dot(&p.wq)));
    let k = tape.constant(heads(x.dot(&p.wk)));
    let v = tape.constant(heads(x.dot(&p.wv)));
    let mask = AttnMask::causal();
    let y = tape.attention(q, k, v, &mask).unwrap();
    let y = tape
        .value(y)
        .to_owned()
        .into_dimensionality::<Ix4>()
        .unwrap();
    // (1, NH, T, HS) → (T, C).
    y.index_axis(Axis(0), 0)
        .permuted_axes([1, 0, 2])
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((t, c))
        .unwrap()
}

fn projections(c: usize, n_head: usize, seed: u64) -> Projections {
    let mut rng = rng(seed);
    Projections {
        wq: randn((c, c), &mut rng) * 0.5,
        wk: randn((c, c), &mut rng) * 0.5,
        wv: randn((c, c), &mut rng),
        n_head,
    }
}

#[test]
fn incremental_equals_full_causal_attention() {
    for (seed, (t, c, nh)) in [(1, 1, 1), (5, 4, 1), (7, 8, 2), (9, 12, 4)]
        .into_iter()
        .enumerate()
    {
        let p = projections(c, nh, seed as u64);
        let x = randn((t, c), &mut rng(100 + seed as u64));
        let want = tunelab(&p, &x);
        let got = attend_incremental(&p, &x);
        assert_close(&format!("T {t}, C {c}, NH {nh}"), &got, &want, 1e-10);
    }
}

#[test]
fn the_cache_carries_across_calls_and_holds_every_token() {
    let (t, c, nh) = (8, 8, 2);
    let p = projections(c, nh, 3);
    let x = randn((t, c), &mut rng(4));
    let want = tunelab(&p, &x);
    let mut cache = KvCache::new(nh, c / nh);
    for i in 0..t {
        let got = attend_step(&p, &mut cache, x.row(i));
        assert_close(
            &format!("the output of token {i}, fed after {i} others"),
            &got,
            &want.row(i).to_owned(),
            1e-10,
        );
        assert_eq!(cache.len(), i + 1, "the cache must hold every token seen");
    }
    // Head 1's keys are columns HS..2·HS of x·W_k.
    let keys = x.dot(&p.wk);
    assert_close(
        "head 1's cached keys",
        &cache.keys[1],
        &keys.slice(ndarray::s![.., c / nh..]).to_owned(),
        1e-12,
    );
}
