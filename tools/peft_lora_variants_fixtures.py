#!/usr/bin/env python3
"""Writes the PEFT fixtures of LoRA's variants: PiSSA, OLoRA, AdaLoRA adapters and LoRA-FA's optimizer.

Run by hand, never in CI, after tools/hf_fixtures.py (it reads tests/fixtures/hf/gpt2-tiny and
bert-tiny); needs `pip install torch transformers peft safetensors`:

    python tools/peft_lora_variants_fixtures.py

What is written (float tensors F32 unless said; token ids stored as F32, exact at these sizes):

hf/gpt2-tiny-pissa/            PEFT LoRA with init_lora_weights="pissa" on gpt2-tiny (c_attn,
                               c_proj, c_fc; r 4, alpha 8), A and B then perturbed (a non-zero
                               update), saved with save_pretrained(...,
                               path_initial_model_for_weight_conversion=...): a plain LoRA of
                               rank 8, alpha 16 on the ORIGINAL base
hf/gpt2-tiny-pissa-ref.safetensors
    input_ids (B, T); logits (B, T, V) of the trained PiSSA model (residual base + adapter);
    init.<module>.lora_A (r, in), init.<module>.lora_B (out, r) and init.<module>.weight (the
    residual, in the checkpoint's Conv1D (in, out) layout) of every targeted module, as PEFT's
    pissa_init computed them (tunelab module names: `transformer.` stripped)
hf/bert-tiny-olora/            PEFT LoRA with init_lora_weights="olora" on bert-tiny as a bare
                               BertModel (FEATURE_EXTRACTION; query, value; r 4, alpha 8),
                               perturbed and saved converted as above (rank 8, alpha 16)
hf/bert-tiny-olora-ref.safetensors
    input_ids, attention_mask (row 1 padded), token_type_ids, hidden (B, T, C) of the trained
    OLoRA model; init.<module>.{lora_A, lora_B, weight} (nn.Linear (out, in) layout)
    (PEFT's olora_init does not transpose Conv1D weights and fails on GPT-2: OLoRA is checked on
    BERT's nn.Linear)
hf/gpt2-tiny-adalora/          a PEFT AdaLoRA adapter on gpt2-tiny (c_attn, c_proj, c_fc;
                               init_r 6, target_r 3, alpha 8, total_step 8, tinit 2, tfinal 2):
                               A, B, E perturbed, then 8 steps of SGD on the LM loss (with the
                               orthogonality regulariser) and update_and_allocate(step) after
                               each, so its config holds a rank_pattern and its tensors only the
                               kept triplets
hf/gpt2-tiny-adalora-init/     the same adapter right after the perturbation, before training:
                               every triplet, no rank pattern
hf/gpt2-tiny-adalora-ref.safetensors
    input_ids, logits of the trained model; init_logits, init_loss (LM loss + regulariser, as
    AdaLoraModel.forward returns it) and init_lm_loss (without it) of the -init adapter
hf/adalora-allocator.safetensors (F64)
    PEFT's RankAllocator alone, in float64, on AdaLoRA (init_r 4, target_r 2) on gpt2-tiny's
    c_attn (both layers), total_step 6, tinit 1, tfinal 1: for each step t, the values
    step<t>.<name> and gradients step<t>.grad.<name> of every lora_A, lora_E, lora_B (random,
    seeded) fed to update_and_allocate(t), and step<t>.masked.<module>.lora_E, the E it left
lorafa_golden.json
    PEFT's LoraFAOptimizer (create_lorafa_optimizer's settings: betas 0.9/0.999, eps 1e-6, no
    weight decay) for two steps on fixed A (r, in), B (out, r), a non-LoRA weight and fixed
    gradients, with the optimizer's state (exp_avg, exp_avg_sq of B and of the other weight) after
    each step; with the bf16 autocast switched off (on a machine where
    accelerate's is_bf16_available() is true, PEFT computes the projection under bfloat16
    autocast; the script prints how far that is from the float32 result)
"""

import copy
import json
import os
import tempfile

import torch
import transformers
from safetensors.torch import load_file, save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "tests", "fixtures")
HF = os.path.join(FIX, "hf")


def save_ref(name, tensors, dtype=torch.float32):
    path = os.path.join(HF, name)
    save_file({k: v.detach().to(dtype).contiguous() for k, v in tensors.items()}, path)
    print("wrote", path, os.path.getsize(path), "bytes")


def fix_config(d, base):
    """A relative base path in the config and no generated model card."""
    path = os.path.join(d, "adapter_config.json")
    config = json.load(open(path))
    config["base_model_name_or_path"] = "tests/fixtures/hf/" + base
    with open(path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    readme = os.path.join(d, "README.md")
    if os.path.exists(readme):
        os.remove(readme)


def tunelab_name(module):
    """A PEFT module path as tunelab names it: no `base_model.model.`, `transformer.`, `bert.`."""
    for p in ["base_model.model.", "transformer.", "bert."]:
        module = module.removeprefix(p)
    return module


def perturb(peft_model, names, seed, scale):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if any(k in n for k in names):
                p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def init_values(peft_model):
    """A0, B0 and the residual weight of every LoRA layer, by tunelab module name."""
    from peft.tuners.lora import LoraLayer

    out = {}
    for name, m in peft_model.named_modules():
        if isinstance(m, LoraLayer) and "default" in m.lora_A:
            t = tunelab_name(name)
            out[f"init.{t}.lora_A"] = m.lora_A["default"].weight.detach().clone()
            out[f"init.{t}.lora_B"] = m.lora_B["default"].weight.detach().clone()
            out[f"init.{t}.weight"] = m.get_base_layer().weight.detach().clone()
    return out


def weight_init_adapter(kind, base_dir, model_cls, lcfg_kwargs, inputs, out_name, out_of):
    from peft import LoraConfig, PeftModel, get_peft_model

    base = model_cls.from_pretrained(base_dir)
    base.eval()
    with torch.no_grad():
        before = out_of(base(**inputs))
    peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(init_lora_weights=kind, **lcfg_kwargs))
    peft_model.eval()
    with torch.no_grad():
        at_init = out_of(peft_model(**inputs))
    print(f"{kind}: residual + adapter at init vs the base: max |diff| {(at_init - before).abs().max():.3e}")
    init = init_values(peft_model)
    tmp = tempfile.mkdtemp()
    init_dir = os.path.join(tmp, "init")
    peft_model.peft_config["default"].init_lora_weights = True
    peft_model.save_pretrained(init_dir)
    peft_model.peft_config["default"].init_lora_weights = kind
    perturb(peft_model, ["lora_A", "lora_B"], 7, 0.05)
    with torch.no_grad():
        trained = out_of(peft_model(**inputs))
    print(f"{kind}: trained vs base: max |diff| {(trained - before).abs().max():.3e} (a non-zero update)")
    d = os.path.join(HF, out_name)
    peft_model.save_pretrained(d, path_initial_model_for_weight_conversion=init_dir)
    fix_config(d, os.path.basename(base_dir))
    # PEFT's own reload of the converted adapter on the original base.
    again = PeftModel.from_pretrained(model_cls.from_pretrained(base_dir), d)
    again.eval()
    with torch.no_grad():
        reloaded = out_of(again(**inputs))
    print(f"{kind}: PEFT reload of the converted adapter on the original base: max |diff| {(reloaded - trained).abs().max():.3e}")
    return trained, init


def pissa(ids):
    trained, init = weight_init_adapter(
        "pissa",
        os.path.join(HF, "gpt2-tiny"),
        transformers.GPT2LMHeadModel,
        dict(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True,
             lora_dropout=0.0, task_type="CAUSAL_LM"),
        {"input_ids": ids},
        "gpt2-tiny-pissa",
        lambda o: o.logits,
    )
    save_ref("gpt2-tiny-pissa-ref.safetensors", {"input_ids": ids, "logits": trained, **init})


def olora():
    g = torch.Generator().manual_seed(14)
    ids = torch.randint(5, 128, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    ids[1, 8:] = 0
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    trained, init = weight_init_adapter(
        "olora",
        os.path.join(HF, "bert-tiny"),
        transformers.BertModel,
        dict(r=4, lora_alpha=8, target_modules=["query", "value"], lora_dropout=0.0,
             task_type="FEATURE_EXTRACTION"),
        inputs,
        "bert-tiny-olora",
        lambda o: o.last_hidden_state,
    )
    save_ref("bert-tiny-olora-ref.safetensors", {**inputs, "hidden": trained, **init})


def adalora(ids):
    from peft import AdaLoraConfig, PeftModel, get_peft_model

    base_dir = os.path.join(HF, "gpt2-tiny")
    model = transformers.GPT2LMHeadModel.from_pretrained(base_dir)
    torch.manual_seed(0)  # AdaLoRA's normal(0, 0.02) init draws from the global generator
    cfg = AdaLoraConfig(init_r=6, target_r=3, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc"],
                        fan_in_fan_out=True, lora_dropout=0.0, total_step=8, tinit=2, tfinal=2,
                        deltaT=1, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg)
    perturb(peft_model, ["lora_A", "lora_B"], 8, 0.1)
    perturb(peft_model, ["lora_E"], 9, 0.5)
    # Before any allocation: every triplet saved, no rank pattern.
    peft_model.eval()
    with torch.no_grad():
        init_logits = peft_model(input_ids=ids).logits
        init_loss = peft_model(input_ids=ids, labels=ids).loss
        init_lm_loss = peft_model.base_model.model(input_ids=ids, labels=ids).loss
    d0 = os.path.join(HF, "gpt2-tiny-adalora-init")
    peft_model.save_pretrained(d0)
    fix_config(d0, "gpt2-tiny")
    peft_model.train()
    for step in range(8):
        loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        with torch.no_grad():
            for p in peft_model.parameters():
                if p.requires_grad and p.grad is not None:
                    p.add_(-0.05 * p.grad)
        peft_model.base_model.update_and_allocate(step)
        peft_model.zero_grad()
    peft_model.eval()
    with torch.no_grad():
        logits = peft_model(input_ids=ids).logits
        loss = peft_model(input_ids=ids, labels=ids).loss
        lm_loss = peft_model.base_model.model(input_ids=ids, labels=ids).loss
    pattern = peft_model.peft_config["default"].rank_pattern
    print("adalora: kept ranks", {k: sum(v) for k, v in pattern.items()})
    d = os.path.join(HF, "gpt2-tiny-adalora")
    peft_model.save_pretrained(d)
    fix_config(d, "gpt2-tiny")
    again = PeftModel.from_pretrained(transformers.GPT2LMHeadModel.from_pretrained(base_dir), d)
    again.eval()
    with torch.no_grad():
        reloaded = again(input_ids=ids).logits
    print(f"adalora: PEFT reload vs the trained model: max |diff| {(reloaded - logits).abs().max():.3e}")
    save_ref("gpt2-tiny-adalora-ref.safetensors",
             {"input_ids": ids, "logits": logits, "loss": loss, "lm_loss": lm_loss,
              "init_logits": init_logits, "init_loss": init_loss, "init_lm_loss": init_lm_loss})


def allocator():
    from peft import AdaLoraConfig, get_peft_model

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel.from_pretrained(os.path.join(HF, "gpt2-tiny")).double()
    cfg = AdaLoraConfig(init_r=4, target_r=2, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True,
                        total_step=6, tinit=1, tfinal=1, deltaT=1, beta1=0.85, beta2=0.85)
    peft_model = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(21)
    out = {}
    lora = [(n, p) for n, p in peft_model.base_model.model.named_parameters() if "lora_" in n]
    for step in range(6):
        with torch.no_grad():
            for n, p in lora:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
                p.grad = torch.randn(p.shape, generator=g, dtype=torch.float64)
                name = tunelab_name(n).replace(".default", "")
                out[f"step{step}.{name}"] = p.detach().clone()
                out[f"step{step}.grad.{name}"] = p.grad.clone()
        peft_model.base_model.update_and_allocate(step)
        for n, p in lora:
            if "lora_E" in n:
                out[f"step{step}.masked.{tunelab_name(n).replace('.default', '')}"] = p.detach().clone()
    save_ref("adalora-allocator.safetensors", out, torch.float64)


def lorafa():
    import peft.optimizers.lorafa as lf

    g = torch.Generator().manual_seed(31)
    r, d_in, d_out = 2, 5, 4
    alpha = 4.0
    s = alpha / r
    a0 = torch.randn(r, d_in, generator=g)
    b0 = 0.1 * torch.randn(d_out, r, generator=g)
    h0 = torch.randn(3, d_out, generator=g)
    grads = [(torch.randn(d_out, r, generator=g), torch.randn(3, d_out, generator=g)) for _ in range(2)]
    lr = 1e-2

    def run(bf16):
        lf.is_bf16_available = lambda: bf16
        A = torch.nn.Parameter(a0.clone(), requires_grad=False)
        B = torch.nn.Parameter(b0.clone())
        H = torch.nn.Parameter(h0.clone())
        groups = [{
            "params": [A, B, H],
            "lr": lr,
            "names": ["m.lora_A.default.weight", "m.lora_B.default.weight", "head.weight"],
            "scaling_factors": [s, s, None],
            "betas": (0.9, 0.999),
            "weight_decay": 0.0,
        }]
        opt = lf.LoraFAOptimizer(groups)
        steps = []
        for gb, gh in grads:
            B.grad = gb.clone()
            H.grad = gh.clone()
            opt.step()
            sb, sh = opt.state["m.lora"], opt.state["head.weight"]
            steps.append({
                "B": B.detach().tolist(), "head": H.detach().tolist(),
                "exp_avg_B": sb["exp_avg_B"].tolist(), "exp_avg_sq_B": sb["exp_avg_sq_B"].tolist(),
                "exp_avg_head": sh["exp_avg"].tolist(), "exp_avg_sq_head": sh["exp_avg_sq"].tolist(),
            })
        return steps

    exact = run(False)
    half = run(True)
    worst = max(abs(x - y) for st, sh in zip(exact, half) for k in ("B",)
                for row, rowh in zip(st[k], sh[k]) for x, y in zip(row, rowh))
    print(f"lora-fa: PEFT's bf16-autocast projection vs float32 after 2 steps: max |diff| in B {worst:.3e}")
    golden = {
        "peft": __import__("peft").__version__,
        "torch": torch.__version__,
        "r": r, "alpha": alpha, "scaling": s, "lr": lr, "eps": 1e-6, "betas": [0.9, 0.999],
        "A": a0.tolist(), "B": b0.tolist(), "head": h0.tolist(),
        "grads": [{"B": gb.tolist(), "head": gh.tolist()} for gb, gh in grads],
        "steps": exact,
    }
    path = os.path.join(FIX, "lorafa_golden.json")
    with open(path, "w") as f:
        json.dump(golden, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    torch.set_num_threads(2)
    ids = load_file(os.path.join(HF, "gpt2-tiny-ref.safetensors"))["input_ids"].long()
    pissa(ids)
    olora()
    adalora(ids)
    allocator()
    lorafa()
