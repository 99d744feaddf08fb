"""Golden values for merging adapters: PEFT's own merge functions and add_weighted_adapter.

Writes tests/fixtures/merge_golden.json with

- "utils": peft.utils.merge_utils on three fixed task tensors (6, 5) with weights [1.0, 0.5, -0.7]:
  task_arithmetic, magnitude_prune, ties (total and frequency), dare_linear and dare_ties at
  density 0.5. DARE's masks come from torch's RNG, which tunelab cannot reproduce: the script
  seeds torch, draws the masks exactly as merge_utils.random_pruning does (one
  torch.bernoulli(full_like(t, density)) per tensor, in order), reseeds, calls PEFT, and records
  both the masks and PEFT's result, so the deterministic part (drop, rescale, elect, combine) is
  tested on PEFT's masks.
- "lora": two PEFT LoRA adapters on tests/fixtures/hf/gpt2-tiny (GPT-2 Conv1D, fan_in_fan_out)
  targeting block 0's c_attn and mlp.c_fc, rank 4 with lora_alpha 8 and 4, random A and B; then
  LoraModel.add_weighted_adapter with weights [0.7, -0.4] for linear, cat, svd, ties, ties_svd,
  magnitude_prune, magnitude_prune_svd (density 0.5) and svd at svd_rank 3, and the merged
  A and B of every module (svd_clamp is left out: PEFT clamps at a quantile of the signed factor
  entries, which depends on the SVD's arbitrary signs).

Run from the repository root: /work/pyenv/bin/python tools/merge_golden.py
"""

import json
import os

import torch
import transformers
from peft import LoraConfig, get_peft_model
from peft.utils import merge_utils

OUT = os.path.join("tests", "fixtures", "merge_golden.json")


def lst(t, digits=9):
    """Nested lists, 9 significant digits (the LoRA tensors are float32) or `digits`."""
    return [lst(x, digits) for x in t] if t.dim() > 0 else float(f"{t.item():.{digits}g}")


def exact(t):
    """Nested lists of float64 values as they are (17 significant digits round-trip)."""
    return lst(t, 17)


def utils():
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(6, 5, generator=g, dtype=torch.float64) for _ in range(3)]
    weights = torch.tensor([1.0, 0.5, -0.7], dtype=torch.float64)
    density = 0.5
    out = {
        "tensors": [exact(t) for t in tensors],
        "weights": weights.tolist(),
        "density": density,
        "task_arithmetic": exact(merge_utils.task_arithmetic(tensors, weights)),
        "magnitude_prune": exact(merge_utils.magnitude_prune(tensors, weights, density)),
        "ties_total": exact(merge_utils.ties(tensors, weights, density, "total")),
        "ties_frequency": exact(merge_utils.ties(tensors, weights, density, "frequency")),
    }
    for name, fn, extra in [
        ("dare_linear", merge_utils.dare_linear, ()),
        ("dare_ties_total", merge_utils.dare_ties, ("total",)),
        ("dare_ties_frequency", merge_utils.dare_ties, ("frequency",)),
    ]:
        torch.manual_seed(123)
        masks = [torch.bernoulli(torch.full_like(t, density)) for t in tensors]
        torch.manual_seed(123)
        result = fn(tensors, weights, density, *extra)
        # The masks recorded are the ones PEFT drew: its result must be recomputable from them.
        kept = [t * m / density for t, m in zip(tensors, masks)]
        if name == "dare_linear":
            check = merge_utils.task_arithmetic(kept, weights)
        else:
            sign = merge_utils.calculate_majority_sign_mask(torch.stack(kept), extra[0])
            w = weights.view(-1, 1, 1)
            check = merge_utils.disjoint_merge(torch.stack(kept) * w, sign)
        assert torch.allclose(check, result), name
        out[name] = {"masks": [exact(m) for m in masks], "result": exact(result)}
    return out


def lora():
    base = transformers.GPT2LMHeadModel.from_pretrained("tests/fixtures/hf/gpt2-tiny")
    base.eval()
    adapters = {}
    model = None
    for name, alpha, seed in [("first", 8, 10), ("second", 4, 11)]:
        cfg = LoraConfig(
            r=4,
            lora_alpha=alpha,
            target_modules=["h.0.attn.c_attn", "h.0.mlp.c_fc"],
            fan_in_fan_out=True,
            lora_dropout=0.0,
            init_lora_weights=False,
        )
        torch.manual_seed(seed)
        if model is None:
            model = get_peft_model(base, cfg, adapter_name=name)
        else:
            model.add_adapter(name, cfg)
    modules = {}
    for key, mod in model.base_model.model.named_modules():
        if hasattr(mod, "lora_A") and "first" in mod.lora_A:
            short = key.removeprefix("transformer.")
            modules[short] = mod
            for n in ["first", "second"]:
                adapters.setdefault(n, {})[short] = {
                    "A": lst(mod.lora_A[n].weight),
                    "B": lst(mod.lora_B[n].weight),
                    "scaling": mod.scaling[n],
                }
    weights = [0.7, -0.4]
    merges = {}
    cases = [
        ("linear", "linear", {}),
        ("cat", "cat", {}),
        ("svd", "svd", {}),
        ("svd_rank3", "svd", {"svd_rank": 3}),
        ("ties", "ties", {"density": 0.5}),
        ("ties_svd", "ties_svd", {"density": 0.5}),
        ("ties_frequency", "ties", {"density": 0.5, "majority_sign_method": "frequency"}),
        ("magnitude_prune", "magnitude_prune", {"density": 0.5}),
        ("magnitude_prune_svd", "magnitude_prune_svd", {"density": 0.5}),
    ]
    for label, combination, kw in cases:
        new = "m_" + label
        model.add_weighted_adapter(["first", "second"], weights, new, combination_type=combination, **kw)
        merged = {}
        for short, mod in modules.items():
            merged[short] = {
                "A": lst(mod.lora_A[new].weight),
                "B": lst(mod.lora_B[new].weight),
                "scaling": mod.scaling[new],
            }
        merges[label] = {"combination": combination, "options": kw, "modules": merged}
    return {"weights": weights, "adapters": adapters, "merges": merges}


def main():
    data = {"utils": utils(), "lora": lora()}
    with open(OUT, "w") as f:
        json.dump(data, f)
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
