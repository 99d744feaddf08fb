#!/usr/bin/env python3
"""Regenerates models/README.md from each shipped model's pretrain.json (run by hand after
`tunelab pretrain`). Every number in the README comes from the run that produced the model."""
import json
import math
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models")
MODELS = [
    ("gpt-tiny", "decoder (GPT-2 wiring: pre-LN, causal, tied LM head), causal LM pre-training"),
    ("bert-tiny", "encoder (BERT wiring: post-LN, bidirectional), masked LM pre-training ({mask:.0%} of tokens chosen, 80/10/10)"),
]

rows, details = [], []
for name, what in MODELS:
    with open(os.path.join(ROOT, name, "pretrain.json")) as f:
        r = json.load(f)
    a = r["args"]
    what = what.format(mask=a.get("mask_prob", 0.15))
    size = os.path.getsize(os.path.join(ROOT, name, "model.safetensors"))
    rows.append(
        f"| {name} | {r['params']:,} | {size / 1e6:.1f} MB | {r['val_loss']:.4f} | {r['val_perplexity']:.2f} | {r['seconds'] / 60:.1f} min |"
    )
    details.append(
        f"### {name}\n\n{what}. C={a['d_model']}, L={a['n_layers']}, NH={a['n_heads']}, "
        f"V={a['vocab_size']}, T={a['seq_len']}; {a['steps']} steps of {a['batch_size']} sequences "
        f"({r['tokens_seen']:,} tokens seen), AdamW at peak lr {a['lr']} with {a['warmup']} warmup steps "
        f"and cosine decay, weight decay {a['weight_decay']}, gradient clipping at 1.0; "
        f"{a['docs']:,} documents of pre-training text ({r['corpus_tokens']:,} tokens).\n\n"
        f"```sh\ncargo run --release -- pretrain --preset {name} --out models/{name} --force\n```\n"
    )

text = f"""# models

The small pre-trained base models shipped with tunelab. Each directory holds `config.json`
(Hugging Face keys), `model.safetensors` (Hugging Face names), `tokenizer.json` (Hugging Face
tokenizers format, byte-level BPE trained on the corpus) and `pretrain.json` (the run's arguments,
loss history and timing). Every later command starts from these, so a fresh machine needs no download.

Both are pre-trained on text about the synthetic world (`tunelab::data::world`, seed 0), which
never contains the held-out people, places and arithmetic that the tasks' validation and test
splits use. Reviews in that text mostly end with a rating ("Five stars.", "Not recommended."),
as reviews on the web do, so predicting the rating teaches a language model to read negation and
contrast: the sentiment that fine-tuning then reads out. The validation loss is measured on 64
windows of held-out text from the same world (`tunelab::train::pretrain::validation_loss`; for
bert-tiny over 15% masked tokens, whatever share training masked); `cargo test` recomputes it
from the shipped files and checks it against the table below (within 2%).

The shipped models were pre-trained on the 2-core machine with `--threads 1` each, while other
work used the second core; the time column is each run's wall time.

| model | parameters | size | validation loss | perplexity | pre-training time |
|---|---|---|---|---|---|
{chr(10).join(rows)}

{chr(10).join(details)}
## Pre-trained versus scratch

`cargo test --release --test suite base_models:: -- --nocapture` fine-tunes each base and the same
architecture from random weights on the same 512 sentiment examples for 120 full fine-tuning
steps and prints both validation accuracies; the test fails unless the pre-trained base wins by
more than 0.05 for both models. bert-tiny is read there through mean pooling: masked-LM
pre-training trains every token's state but never [CLS] or a pooler (BERT's pooler came from
next-sentence prediction), and through [CLS] its pre-training did not help in this budget.
tunelab's classification head still pools [CLS] by default for encoders, as BERT does.

This file is written by `tools/models_readme.py` from the `pretrain.json` files.
"""
with open(os.path.join(ROOT, "README.md"), "w") as f:
    f.write(text)
print(text)
