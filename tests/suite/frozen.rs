//! Frozen means no work: backward never computes a gradient nobody needs. These tests count the
//! matmul kernel calls made during backward, so a gradient that were computed and thrown away
//! would still fail them.

use ndarray::Array;
use tunelab::kernels;
use tunelab::{Grads, ParamStore, Tape};

/// A Linear layer y = x Wᵀ + b under a scalar loss. Returns the gemm calls made by backward and
/// the gradients.
fn linear_backward(x_trainable: bool, w_trainable: bool) -> (u64, Grads<f32>, ParamStore<f32>) {
    let mut store = ParamStore::<f32>::new();
    let x = store
        .add(
            "x",
            Array::from_shape_fn((4, 3, 8), |(i, j, k)| (i + 2 * j + k) as f32 * 0.1).into_dyn(),
            x_trainable,
        )
        .unwrap();
    let w = store
        .add(
            "w",
            Array::from_shape_fn((5, 8), |(i, k)| (i * k) as f32 * 0.01).into_dyn(),
            w_trainable,
        )
        .unwrap();
    let b = store.add("b", Array::zeros(5).into_dyn(), true).unwrap();
    let mut tape = Tape::new(&store);
    let (xv, wv, bv) = (tape.param(x), tape.param(w), tape.param(b));
    let h = tape.matmul_t(xv, wv, false, true).unwrap();
    let y = tape.add(h, bv).unwrap();
    let loss = tape.sum_all(y).unwrap();
    let mut grads = Grads::new(&store);
    let before = kernels::stats();
    tape.backward(loss, &mut grads).unwrap();
    let calls = kernels::stats().gemm_calls - before.gemm_calls;
    (calls, grads, store)
}

#[test]
fn frozen_linear_weight_gradient_is_never_computed() {
    // Both trainable: dX and dW, two products.
    let (calls, grads, store) = linear_backward(true, true);
    assert_eq!(calls, 2);
    assert!(grads.get(store.id("w").unwrap()).is_some());

    // W frozen: only dX is computed, one product, and W has no gradient buffer at all.
    let (calls, grads, store) = linear_backward(true, false);
    assert_eq!(calls, 1, "a frozen weight's gradient product must not run");
    assert!(grads.get(store.id("w").unwrap()).is_none());
    assert!(grads.get(store.id("x").unwrap()).is_some());

    // Input and weight both frozen (only the bias trains, as in BitFit): no product at all.
    let (calls, grads, store) = linear_backward(false, false);
    assert_eq!(calls, 0, "nothing upstream of the matmul needs a gradient");
    assert!(grads.get(store.id("b").unwrap()).is_some());
}

#[test]
fn frozen_embedding_receives_no_gradient_and_records_nothing() {
    let mut store = ParamStore::<f32>::new();
    let table = store
        .add(
            "wte",
            Array::from_shape_fn((10, 4), |(i, j)| (i + j) as f32).into_dyn(),
            false,
        )
        .unwrap();
    let head = store
        .add(
            "head",
            Array::from_shape_fn((4, 3), |(i, j)| (i * j) as f32 * 0.1).into_dyn(),
            true,
        )
        .unwrap();
    let mut tape = Tape::new(&store);
    let t = tape.param(table);
    let ids = ndarray::array![[1usize, 2], [3, 9]];
    let e = tape.embedding(t, ids.view()).unwrap();
    assert!(
        !tape.requires_grad(e),
        "the lookup of a frozen table is a constant for backward"
    );
    let h = tape.param(head);
    let y = tape.matmul(e, h).unwrap();
    let loss = tape.sum_all(y).unwrap();
    let mut grads = Grads::new(&store);
    let before = kernels::stats();
    tape.backward(loss, &mut grads).unwrap();
    assert_eq!(
        kernels::stats().gemm_calls - before.gemm_calls,
        1,
        "only the head's weight gradient"
    );
    assert!(grads.get(table).is_none());
    assert!(grads.get(head).is_some());
}

#[test]
fn frozen_everything_is_an_error_not_a_silent_zero() {
    let mut store = ParamStore::<f32>::new();
    let w = store
        .add("w", Array::ones((2, 2)).into_dyn(), false)
        .unwrap();
    let mut tape = Tape::new(&store);
    let wv = tape.param(w);
    let loss = tape.sum_all(wv).unwrap();
    let mut grads = Grads::new(&store);
    let err = tape.backward(loss, &mut grads).unwrap_err();
    assert!(err.to_string().contains("no trainable parameter"), "{err}");
}
