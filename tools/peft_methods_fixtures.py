#!/usr/bin/env python3
"""Writes PEFT LoHa, LoKr and VeRA adapters and their reference logits into tests/fixtures/hf/,
and checks adapters tunelab exported load in PEFT with the same logits.

Run by hand, never in CI (needs `pip install torch transformers peft safetensors`), after
tools/hf_fixtures.py wrote the tiny base models:

    python tools/peft_methods_fixtures.py            # write the fixtures
    python tools/peft_methods_fixtures.py --check    # check tunelab's exports (see below)

PEFT's LoHa and LoKr (LyCORIS layers) take nn.Linear, Conv1d and Conv2d only, not GPT-2's
transformers Conv1D, so they are on the tiny BERT (sequence classification, the classifier in
modules_to_save, as bert-tiny-lora); VeRA takes both, so it is on both.

Every trainable adapter tensor is set to random non-zero values (PEFT's init makes the update
zero: LoHa's hada_w2_b, LoKr's lokr_w1 / lokr_w1_a, VeRA's vera_lambda_b), so the reference
logits differ from the base model's.

What is written (float tensors F32; token ids stored as F32, exact at these sizes):

bert-tiny-loha/        LoHa on query, value (r 4, alpha 8)
bert-tiny-lokr/        LoKr on query, value, intermediate.dense (r 2, alpha 4): lokr_w1 full,
                       lokr_w2 low-rank (lokr_w2_a, lokr_w2_b)
bert-tiny-lokr-both/   LoKr on key, attention.output.dense (r 1, alpha 2, decompose_both,
                       decompose_factor 4): lokr_w1_a/_b and lokr_w2_a/_b
bert-tiny-vera/        VeRA on query, value (r 8, projection_prng_key 3, d_initial 0.1)
bert-tiny-<m>-ref.safetensors   input_ids, attention_mask, token_type_ids, logits (B, 3)
gpt2-tiny-vera/        VeRA on c_attn, c_proj, c_fc (r 8, projection_prng_key 7): the shared
                       vera_A (8, 192), vera_B (192, 8) sliced per layer; fan_in_fan_out true
gpt2-tiny-vera-ref.safetensors  input_ids (B, T), logits (B, T, V)

--check: loads with PeftModel.from_pretrained, on the same base, the adapters the tests
`cargo test --release --test suite peft_methods::` export into target/tmp/peft_methods/:
N-exported for each fixture N above (PEFT's adapter through tunelab and back), compared with the
reference logits; and tunelab-{bert-loha,bert-lokr,bert-vera,gpt2-vera}-exported, adapters
tunelab initialised and perturbed itself (VeRA's projections from tunelab's generator), compared
with the logits tunelab computed (tunelab-*-logits.safetensors). Prints each max |difference|;
exits non-zero above 1e-4.
"""

import json
import os
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file

transformers.logging.set_verbosity_error()

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "hf")
EXPORTS = os.path.join(ROOT, "target", "tmp", "peft_methods")

BERT = ["bert-tiny-loha", "bert-tiny-lokr", "bert-tiny-lokr-both", "bert-tiny-vera"]
GPT = ["gpt2-tiny-vera"]


def save_adapter(peft_model, name, base):
    """save_pretrained, then a relative base path in the config and no generated model card."""
    d = os.path.join(OUT, name)
    peft_model.save_pretrained(d)
    path = os.path.join(d, "adapter_config.json")
    config = json.load(open(path))
    config["base_model_name_or_path"] = "tests/fixtures/hf/" + base
    with open(path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    readme = os.path.join(d, "README.md")
    if os.path.exists(readme):
        os.remove(readme)


def save_ref(name, tensors):
    path = os.path.join(OUT, name)
    save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, path)
    print("wrote", path, os.path.getsize(path), "bytes")


def randomise_adapter(peft_model, seed):
    """Every trainable adapter tensor (not the classifier) at random, non-zero."""
    g = torch.Generator().manual_seed(seed)
    n = 0
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if p.requires_grad and "modules_to_save" not in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
                n += 1
    assert n > 0, "no adapter tensor to randomise"


def bert_inputs():
    """The same inputs as tools/hf_fixtures.py's bert-tiny-lora."""
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(5, 128, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    ids[1, 8:] = 0
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    return ids, mask, types


def bert_classifier():
    d = os.path.join(OUT, "bert-tiny")
    return transformers.BertForSequenceClassification.from_pretrained(d, num_labels=3)


def bert_logits(peft_model):
    ids, mask, types = bert_inputs()
    peft_model.eval()
    with torch.no_grad():
        return peft_model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits


def bert_fixture(name, config, seed):
    from peft import get_peft_model

    peft_model = get_peft_model(bert_classifier(), config)
    randomise_adapter(peft_model, seed)
    with torch.no_grad():
        head = peft_model.base_model.model.classifier.modules_to_save["default"]
        g = torch.Generator().manual_seed(seed + 100)
        head.weight.copy_(0.3 * torch.randn(head.weight.shape, generator=g))
        head.bias.copy_(0.3 * torch.randn(head.bias.shape, generator=g))
    logits = bert_logits(peft_model)
    save_adapter(peft_model, name, "bert-tiny")
    ids, mask, types = bert_inputs()
    save_ref(
        name + "-ref.safetensors",
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "logits": logits},
    )


def gpt_logits(peft_model, ids):
    peft_model.eval()
    with torch.no_grad():
        return peft_model(input_ids=ids).logits


def gpt_inputs():
    """The input ids of tools/hf_fixtures.py's gpt2-tiny-lora."""
    return load_file(os.path.join(OUT, "gpt2-tiny-lora-ref.safetensors"))["input_ids"].long()


def write():
    from peft import LoHaConfig, LoKrConfig, VeraConfig, get_peft_model

    bert_fixture(
        "bert-tiny-loha",
        LoHaConfig(r=4, alpha=8, target_modules=["query", "value"], task_type="SEQ_CLS"),
        11,
    )
    bert_fixture(
        "bert-tiny-lokr",
        LoKrConfig(
            r=2, alpha=4, target_modules=["query", "value", "intermediate.dense"], task_type="SEQ_CLS"
        ),
        12,
    )
    bert_fixture(
        "bert-tiny-lokr-both",
        LoKrConfig(
            r=1,
            alpha=2,
            target_modules=["key", "attention.output.dense"],
            decompose_both=True,
            decompose_factor=4,
            task_type="SEQ_CLS",
        ),
        13,
    )
    bert_fixture(
        "bert-tiny-vera",
        VeraConfig(r=8, target_modules=["query", "value"], projection_prng_key=3, task_type="SEQ_CLS"),
        14,
    )

    base = transformers.GPT2LMHeadModel.from_pretrained(os.path.join(OUT, "gpt2-tiny"))
    vcfg = VeraConfig(
        r=8,
        target_modules=["c_attn", "c_proj", "c_fc"],
        projection_prng_key=7,
        fan_in_fan_out=True,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(base, vcfg)
    randomise_adapter(peft_model, 15)
    ids = gpt_inputs()
    logits = gpt_logits(peft_model, ids)
    save_adapter(peft_model, "gpt2-tiny-vera", "gpt2-tiny")
    save_ref("gpt2-tiny-vera-ref.safetensors", {"input_ids": ids, "logits": logits})


def check():
    from peft import PeftModel

    worst = 0.0
    ours = ["tunelab-bert-loha", "tunelab-bert-lokr", "tunelab-bert-vera", "tunelab-gpt2-vera"]
    for name in BERT + GPT + ours:
        d = os.path.join(EXPORTS, name + "-exported")
        if not os.path.isdir(d):
            sys.exit(f"{d} is missing: run `cargo test --release --test suite peft_methods::` first")
        if name in ours:
            want = load_file(os.path.join(EXPORTS, name + "-logits.safetensors"))["logits"]
            what = "tunelab's adapter"
        else:
            want = load_file(os.path.join(OUT, name + "-ref.safetensors"))["logits"]
            what = "PEFT's adapter via tunelab"
        if "bert" in name:
            model = PeftModel.from_pretrained(bert_classifier(), d)
            logits = bert_logits(model)
        else:
            base = transformers.GPT2LMHeadModel.from_pretrained(os.path.join(OUT, "gpt2-tiny"))
            model = PeftModel.from_pretrained(base, d)
            logits = gpt_logits(model, gpt_inputs())
        diff = (logits - want).abs().max().item()
        worst = max(worst, diff)
        print(f"{'OK    ' if diff < 1e-4 else 'NOT OK'} {name}: PEFT loads the export of {what}, "
              f"max |logits diff| {diff:.3e}")
    sys.exit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    torch.set_num_threads(2)
    if sys.argv[1:] == ["--check"]:
        check()
    elif sys.argv[1:]:
        sys.exit(__doc__)
    else:
        write()
