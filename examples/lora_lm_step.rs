//! The notes' section 5 in tunelab: fine-tune a GPT-like model on one text with
//! `loss.backward()`, updating only LoRA's small matrices.
//!
//! cargo run --release --example lora_lm_step

use ndarray::Array2;
use tunelab::lab::finetune::load_base;
use tunelab::loss::{causal_lm_loss, lm_labels};
use tunelab::nn::Input;
use tunelab::optim::{AdamW, AdamWConfig, Optimizer};
use tunelab::peft::{self, lora::LoraConfig, MethodSpec};
use tunelab::{Grads, Tape};

fn main() -> tunelab::Result<()> {
    // ANCHOR: setup
    // The shipped pre-trained base, and LoRA r = 8 on the query and value projections.
    let base = load_base("gpt-tiny")?;
    let (model, mut store) = (base.model, base.store);
    let spec = MethodSpec::Lora(LoraConfig::default());
    let method = peft::apply(&spec, &model, &mut store, 0)?;
    println!("{}", store.trainable_summary());

    // inputs = tokenizer("Example prompt"); labels = input_ids
    let ids = base
        .tok
        .encode("the weather in hanoi is warm today", false)?;
    let ids = Array2::from_shape_vec((1, ids.len()), ids.iter().map(|&i| i as usize).collect())
        .expect("one row");
    let labels = lm_labels(ids.view(), None)?;
    // ANCHOR_END: setup

    // ANCHOR: step
    let mut opt = AdamW::new(AdamWConfig::default())?;
    for step in 0..5 {
        let mut grads = Grads::new(&store);
        let mut tape = Tape::new(&store);
        let hidden = model.forward(&mut tape, method.as_ref(), &Input::new(ids.view()))?;
        let logits = model.lm_logits(&mut tape, method.as_ref(), hidden)?; // (1, T, V)
        let loss = causal_lm_loss(&mut tape, logits, labels.view())?; // shifts the labels itself
        tape.backward(loss, &mut grads)?; // loss.backward()
        println!("step {step}: loss {:.4}", tape.scalar(loss)?);
        drop(tape);
        opt.step(&mut store, &grads, 1e-2); // only the trainable (LoRA) tensors move
    }
    println!("optimizer state: {} bytes", opt.state_bytes());
    // ANCHOR_END: step
    Ok(())
}
