//! What the walk-throughs show before any training: the built-in examples, their tokens, where a
//! classifier pools, how a QA answer becomes a start and an end token, and how an instruction
//! example becomes a prompt the loss ignores plus a response ending in the end token.
//!
//! `cargo run --release --example walkthrough`
//!
//! Each section is printed between `# ANCHOR: name` and `# ANCHOR_END: name` lines, so the book
//! includes each section of `book/src/generated/example-walkthrough.txt` by its name.
//!
//! With the argument `prompts` it prints only the prompts of the first three test conversations
//! of the dialogue task, one a line with each line break written `\n`, for
//! `tools/book_outputs.sh` to generate from.

use tunelab::autodiff::IGNORE_INDEX;
use tunelab::data::batch::{pad, PadSide};
use tunelab::data::encode::{encode, Target};
use tunelab::data::lm::WORLD_SEED;
use tunelab::data::tasks::{build, Example, Task};
use tunelab::data::tokenizer::Tokenizer;
use tunelab::data::world::World;
use tunelab::lab::finetune::load_base;

/// `id:token` for every id, the way the tokenizer spells each token.
fn spelled(tok: &Tokenizer, ids: &[u32]) -> String {
    ids.iter()
        .map(|&i| tok.id_to_token(i).unwrap_or_else(|| "?".into()))
        .collect::<Vec<_>>()
        .join(" | ")
}

fn main() -> tunelab::Result<()> {
    let world = World::generate(WORLD_SEED);
    if std::env::args().nth(1).as_deref() == Some("prompts") {
        for e in build(Task::Dialogue, &world, 42).test.iter().take(3) {
            if let Example::Generation { prompt, .. } = e {
                println!("{}", prompt.replace('\n', "\\n"));
            }
        }
        return Ok(());
    }
    let gpt = load_base("gpt-tiny")?;
    let bert = load_base("bert-tiny")?;
    let max_len = gpt.model.config.max_len;

    println!("# ANCHOR: data");
    println!("== sentiment: the first 4 training examples (data seed 42, as finetune's --seed) ==");
    let labels = Task::Sentiment.labels();
    let s = build(Task::Sentiment, &world, 42);
    println!(
        "splits: {} train, {} validation, {} test; labels {:?}",
        s.train.len(),
        s.validation.len(),
        s.test.len(),
        labels
    );
    let first: Vec<&Example> = s.train.iter().take(4).collect();
    for e in &first {
        if let Example::Classification { text, label } = e {
            println!("  [{}] {text}", labels[*label]);
        }
    }

    println!("# ANCHOR_END: data\n# ANCHOR: tokens");
    println!("== the same examples as gpt-tiny's tokens (no special tokens added) ==");
    let mut seqs = Vec::new();
    for e in &first {
        let enc = encode(&gpt.tok, e, &[], max_len)?;
        println!(
            "  {} tokens: {}",
            enc.ids.len(),
            spelled(&gpt.tok, &enc.ids)
        );
        seqs.push(enc.ids);
    }
    println!("# ANCHOR_END: tokens\n# ANCHOR: pooling");
    let pad_id = gpt.tok.pad_id().unwrap_or(0); // as the trainer pads
    let b = pad(&seqs, pad_id, PadSide::Right, None)?;
    println!(
        "padded on the right into a ({}, {}) batch with pad id {pad_id}; the attention mask per row:",
        b.batch_size(),
        b.seq_len()
    );
    for (r, len) in b.lengths().iter().enumerate() {
        let row: String = b
            .attention_mask
            .row(r)
            .iter()
            .map(|&m| if m { '1' } else { '0' })
            .collect();
        println!(
            "  {row}  -> the classifier reads position {} (the last real token, {:?})",
            len - 1,
            gpt.tok
                .id_to_token(b.ids[[r, len - 1]] as u32)
                .unwrap_or_default()
        );
    }

    println!("\n== the first example as bert-tiny's tokens ==");
    let enc = encode(&bert.tok, first[0], &[], bert.model.config.max_len)?;
    println!("  {}", spelled(&bert.tok, &enc.ids));
    println!(
        "  -> the classifier reads position 0 ({:?}) through the pooler (dense + tanh)",
        bert.tok.id_to_token(enc.ids[0]).unwrap_or_default()
    );

    println!("# ANCHOR_END: pooling\n# ANCHOR: qa");
    println!("== qa: the first training example and its span targets (gpt-tiny) ==");
    let q = build(Task::Qa, &world, 42);
    if let Some(
        e @ Example::Span {
            context,
            question,
            answer,
            ..
        },
    ) = q.train.first()
    {
        println!("  context:  {context}");
        println!("  question: {question}");
        println!("  answer:   {answer}");
        let enc = encode(&gpt.tok, e, &[], max_len)?;
        if let Target::Span { start, end } = enc.target {
            println!(
                "  {} tokens: {}",
                enc.ids.len(),
                spelled(&gpt.tok, &enc.ids)
            );
            println!(
                "  start = {start}, end = {end}: tokens {:?} decode to {:?}",
                spelled(&gpt.tok, &enc.ids[start..=end]),
                gpt.tok.decode(&enc.ids[start..=end], true)?.trim()
            );
        }
    }

    println!("# ANCHOR_END: qa\n# ANCHOR: dialogue");
    println!("== dialogue: the first training example as an instruction (gpt-tiny) ==");
    let d = build(Task::Dialogue, &world, 42);
    if let Some(e @ Example::Generation { prompt, response }) = d.train.first() {
        println!("  prompt (the template filled in):\n{}", indent(prompt));
        println!("  response: {response}");
        let enc = encode(&gpt.tok, e, &[], max_len)?;
        if let Target::Lm(labels) = &enc.target {
            let masked = labels.iter().filter(|&&l| l == IGNORE_INDEX).count();
            println!(
                "  {} tokens: {} prompt tokens labelled {IGNORE_INDEX} (no loss), {} response tokens as targets",
                enc.ids.len(),
                masked,
                enc.ids.len() - masked
            );
            let tail = enc.prompt_len.saturating_sub(3);
            println!("  from 3 tokens before the response to the end (id:token:label):");
            for (i, (&id, &l)) in enc.ids.iter().zip(labels).enumerate().skip(tail) {
                let t = gpt.tok.id_to_token(id).unwrap_or_default();
                let mark = if Some(id) == gpt.tok.eos_id() {
                    "  <- the end token: generation stops here"
                } else if i == enc.prompt_len {
                    "  <- the response starts"
                } else {
                    ""
                };
                println!("    {i:>3} {id:>5} {t:<14} {l:>5}{mark}");
            }
        }
    }
    println!("# ANCHOR_END: dialogue");
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
