#!/usr/bin/env python3
"""Writes tests/fixtures/trainer/: Hugging Face Trainer trajectories that tunelab's Trainer must
reproduce step for step (tests/suite/trainer_golden.rs), the llm.c way.

Run by hand, never in CI (needs torch, transformers, peft; run tools/hf_fixtures.py first, its
tests/fixtures/hf/gpt2-tiny and gpt2-tiny-lora are the model and the adapter used here):

    python tools/trainer_golden.py

Three runs of transformers' `Trainer` on the same 72 sequences, 8 optimizer steps each, with
Hugging Face's defaults where tunelab names the same thing (AdamW from torch, betas 0.9/0.999,
eps 1e-8; linear decay to 0 without warmup; max_grad_norm 1.0) and weight_decay 0.01, which
Hugging Face applies to every parameter except biases and LayerNorm weights:

full_b9.json     full fine-tuning of gpt2-tiny, batch 9
full_b3x3.json   full fine-tuning, batch 3 with gradient_accumulation_steps 3 (the same 9
                 sequences per step: Hugging Face gives the losses of full_b9 up to rounding)
lora_b3x3.json   LoRA through PEFT, continued from the adapter gpt2-tiny-lora (A and B both
                 nonzero) with `PeftModel.from_pretrained(model, dir, is_trainable=True)`,
                 batch 3 with gradient_accumulation_steps 3

The sequences have different lengths (6 to 20 tokens) and prompts of 1 to 5 tokens; a micro-batch
is right-padded to its longest sequence, and labels are -100 on the prompt and the padding, so
micro-batches hold different numbers of target tokens and the token weighting of accumulation
matters. The data order is fixed (a SequentialSampler: step s takes sequences 9s..9s+8, its
micro-batch j sequences 9s+3j..9s+3j+2), and each file holds the padded micro-batches exactly as
the collator gave them to the model.

What is compared: `loss` is what the Trainer logs with logging_steps=1. In transformers 5.x
(read from trainer.py: `training_step`, `_get_num_items_in_batch`, `_maybe_log_save_evaluate`)
each micro-batch's loss is its summed token cross-entropy divided by `num_items_in_batch`, the
labels != -100 of the whole accumulated step counted over `labels[..., 1:]` (causal LM losses
shift), and the logged loss is the sum of the step's micro-batch losses divided by the steps since
the last log (1): the token-weighted mean loss of the step, computed before its update. `grad_norm`
is the global gradient norm before clipping, `learning_rate` the rate the step used.
"""

import json
import os
import tempfile

import peft
import torch
import transformers
from peft import PeftModel
from torch.utils.data import SequentialSampler

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
HF = os.path.join(ROOT, "tests", "fixtures", "hf")
OUT = os.path.join(ROOT, "tests", "fixtures", "trainer")
STEPS = 8
PER_STEP = 9
PAD_ID = 0
ARGS = dict(learning_rate=1e-2, weight_decay=0.01, max_grad_norm=1.0, warmup_steps=0)


def sequences(n, vocab, seed):
    """n sequences over tokens 1..vocab-1, each with its prompt length: a random first token,
    then mostly a fixed bigram rule (x -> 5x + 3) with one token in four at random, so that
    there is something to learn and the losses fall over the 8 steps."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(6, 21, (1,), generator=g))
        prompt = int(torch.randint(1, 6, (1,), generator=g))
        ids = [int(torch.randint(1, vocab, (1,), generator=g))]
        for _ in range(length - 1):
            if float(torch.rand(1, generator=g)) < 0.25:
                ids.append(int(torch.randint(1, vocab, (1,), generator=g)))
            else:
                ids.append((5 * ids[-1] + 3) % (vocab - 1) + 1)
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def collate(examples):
    """Right padding to the longest sequence: pad id 0, attention mask 0, label -100."""
    t = max(len(e["input_ids"]) for e in examples)
    ids = [e["input_ids"] + [PAD_ID] * (t - len(e["input_ids"])) for e in examples]
    mask = [[1] * len(e["input_ids"]) + [0] * (t - len(e["input_ids"])) for e in examples]
    labels = [e["labels"] + [-100] * (t - len(e["labels"])) for e in examples]
    return {
        "input_ids": torch.tensor(ids),
        "attention_mask": torch.tensor(mask),
        "labels": torch.tensor(labels),
    }


class SequentialTrainer(transformers.Trainer):
    """The Trainer with the data in dataset order (its default sampler shuffles)."""

    def _get_train_sampler(self, train_dataset=None):
        return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)


class Record(transformers.TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.logs.append(dict(logs))


def run(name, model, data, batch, accum):
    seen = []

    def collate_and_keep(examples):
        b = collate(examples)
        seen.append({k: v.tolist() for k, v in b.items()})
        return b

    rec = Record()
    with tempfile.TemporaryDirectory() as tmp:
        args = transformers.TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accum,
            max_steps=STEPS,
            lr_scheduler_type="linear",
            optim="adamw_torch",
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            seed=0,
            disable_tqdm=True,
            dataloader_drop_last=False,
            **ARGS,
        )
        trainer = SequentialTrainer(
            model=model,
            args=args,
            train_dataset=data,
            data_collator=collate_and_keep,
            callbacks=[rec],
        )
        trainer.train()
    assert len(rec.logs) == STEPS, rec.logs
    assert len(seen) == STEPS * accum, len(seen)
    # The micro-batches the model saw are the consecutive slices of the data, in order.
    for i, b in enumerate(seen):
        want = collate(data[i * batch : (i + 1) * batch])
        assert b == {k: v.tolist() for k, v in want.items()}, f"micro-batch {i} out of order"
    fixture = {
        "versions": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "peft": peft.__version__,
        },
        "args": dict(ARGS, batch_size=batch, gradient_accumulation_steps=accum, max_steps=STEPS),
        "micro_batches": seen,
        "loss": [l["loss"] for l in rec.logs],
        "grad_norm": [float(l["grad_norm"]) for l in rec.logs],
        "learning_rate": [l["learning_rate"] for l in rec.logs],
    }
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name + ".json")
    with open(path, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes); losses {fixture['loss']}")
    return fixture


def base():
    model = transformers.GPT2LMHeadModel.from_pretrained(os.path.join(HF, "gpt2-tiny"))
    assert model.config.resid_pdrop == model.config.embd_pdrop == model.config.attn_pdrop == 0.0
    return model


def main():
    torch.set_num_threads(1)
    data = sequences(STEPS * PER_STEP, base().config.vocab_size, 7)
    a = run("full_b9", base(), data, 9, 1)
    b = run("full_b3x3", base(), data, 3, 3)
    diff = max(abs(x - y) for x, y in zip(a["loss"], b["loss"]))
    print(f"Hugging Face batch 9 against 3 x 3: max loss difference {diff:.3e}")
    lora = PeftModel.from_pretrained(base(), os.path.join(HF, "gpt2-tiny-lora"), is_trainable=True)
    assert lora.peft_config["default"].lora_dropout == 0.0
    run("lora_b3x3", lora, data, 3, 3)


if __name__ == "__main__":
    main()
