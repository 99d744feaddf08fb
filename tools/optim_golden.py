#!/usr/bin/env python3
"""Writes tests/fixtures/optim_golden.json: PyTorch's optimizer steps on fixed inputs.

Run by hand, never in CI (needs torch and transformers: `pip install torch transformers`):

    python tools/optim_golden.py

Three parameters, all float64:
    weight (3, 4)  gradients ~ N(0, 1)
    bias   (4,)    gradients ~ N(0, 0.01^2), small so that AdamW's eps matters when it is large
    extra  (2,)    no gradient on steps 0 and 1 (p.grad is None, so torch skips it and its own
                   step counter lags the others: this checks per-parameter bias correction)

For a handful of steps with fixed gradients, each case runs torch.optim.AdamW or
torch.optim.SGD under a LambdaLR schedule from transformers (constant, linear with warmup,
cosine with warmup) and records the learning rate each param group used, the parameters after
every step and the optimizer state at the end. Two param groups mirror tunelab's per-parameter
options: a learning-rate multiplier (LoRA+) and exclusion from weight decay.

Also recorded: transformers' schedule factors on a longer range (including steps past the end),
and torch.nn.utils.clip_grad_norm_ on the step-0 gradients.

tests/suite/optim.rs replays every case in tunelab (in f64) and asserts the max difference of every
tensor after every step is under 1e-6.
"""

import json
import math
import os

import torch
import transformers
from transformers import (
    get_constant_schedule,
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)

STEPS = 6
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "optim_golden.json")

torch.set_default_dtype(torch.float64)
gen = torch.Generator().manual_seed(1234)

# name, shape, gradient scale, first step with a gradient
PARAMS = [
    ("weight", (3, 4), 1.0, 0),
    ("bias", (4,), 1e-2, 0),
    ("extra", (2,), 1e-1, 2),
]

init = {name: torch.randn(shape, generator=gen) for name, shape, _, _ in PARAMS}
grads = []  # grads[step][name] -> tensor or None
for step in range(STEPS):
    g = {}
    for name, shape, scale, first in PARAMS:
        g[name] = torch.randn(shape, generator=gen) * scale if step >= first else None
    grads.append(g)


def flat(t):
    return [float(x) for x in t.reshape(-1).tolist()]


def make_schedule(opt, sched):
    kind = sched["kind"]
    if kind == "constant":
        return get_constant_schedule(opt)
    if kind == "constant_with_warmup":
        return get_constant_schedule_with_warmup(opt, sched["warmup_steps"])
    if kind == "linear":
        return get_linear_schedule_with_warmup(opt, sched["warmup_steps"], sched["total_steps"])
    if kind == "cosine":
        return get_cosine_schedule_with_warmup(opt, sched["warmup_steps"], sched["total_steps"])
    raise ValueError(kind)


def run_case(case):
    params = {name: torch.nn.Parameter(init[name].clone()) for name, _, _, _ in PARAMS}
    groups = []
    for g in case["groups"]:
        groups.append(
            {
                "params": [params[n] for n in g["params"]],
                "lr": case["lr"] * g["lr_mult"],
                "weight_decay": case["weight_decay"] if g["decay"] else 0.0,
            }
        )
    if case["optimizer"] == "adamw":
        opt = torch.optim.AdamW(
            groups,
            lr=case["lr"],
            betas=tuple(case["betas"]),
            eps=case["eps"],
            weight_decay=case["weight_decay"],
            foreach=False,
        )
    else:
        opt = torch.optim.SGD(
            groups,
            lr=case["lr"],
            momentum=case["momentum"],
            nesterov=case["nesterov"],
            weight_decay=case["weight_decay"],
            foreach=False,
        )
    sched = make_schedule(opt, case["schedule"])
    lrs, after = [], []
    for step in range(STEPS):
        for name, p in params.items():
            g = grads[step][name]
            p.grad = None if g is None else g.clone()
        lrs.append([group["lr"] for group in opt.param_groups])
        opt.step()
        sched.step()
        after.append({name: flat(p.detach()) for name, p in params.items()})
    state = {}
    for name, p in params.items():
        st = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq", "momentum_buffer"):
            if key in st and st[key] is not None:
                state[f"{name}.{key}"] = flat(st[key])
        if "step" in st:
            state[f"{name}.step"] = float(st["step"])
    out = dict(case)
    out.update(lrs=lrs, params_after=after, state_after=state)
    return out


def groups(lr_mult_bias):
    # weight: decayed, base learning rate; bias and extra: no decay, lr * lr_mult_bias (LoRA+-like)
    return [
        {"params": ["weight"], "lr_mult": 1.0, "decay": True},
        {"params": ["bias", "extra"], "lr_mult": lr_mult_bias, "decay": False},
    ]


def all_decayed():
    return [{"params": ["weight", "bias", "extra"], "lr_mult": 1.0, "decay": True}]


ADAMW = dict(optimizer="adamw", momentum=0.0, nesterov=False)
SGD = dict(optimizer="sgd", betas=[0.9, 0.999], eps=0.0)
CASES = [
    dict(
        name="adamw_constant",
        **ADAMW,
        lr=1e-2,
        betas=[0.9, 0.999],
        eps=1e-8,
        weight_decay=0.1,
        schedule=dict(kind="constant", warmup_steps=0, total_steps=STEPS),
        groups=all_decayed(),
    ),
    dict(
        name="adamw_warmup_cosine_groups",
        **ADAMW,
        lr=2e-2,
        betas=[0.8, 0.95],
        eps=1e-3,  # comparable to sqrt(v) of the small bias gradients: eps placement matters
        weight_decay=0.05,
        schedule=dict(kind="cosine", warmup_steps=2, total_steps=STEPS),
        groups=groups(4.0),
    ),
    dict(
        name="adamw_warmup_linear",
        **ADAMW,
        lr=3e-2,
        betas=[0.9, 0.999],
        eps=1e-8,
        weight_decay=0.01,
        schedule=dict(kind="linear", warmup_steps=1, total_steps=STEPS),
        groups=groups(16.0),
    ),
    dict(
        name="sgd_momentum",
        **SGD,
        lr=0.1,
        momentum=0.9,
        nesterov=False,
        weight_decay=0.01,
        schedule=dict(kind="constant", warmup_steps=0, total_steps=STEPS),
        groups=all_decayed(),
    ),
    dict(
        name="sgd_nesterov_linear",
        **SGD,
        lr=0.05,
        momentum=0.8,
        nesterov=True,
        weight_decay=0.1,
        schedule=dict(kind="linear", warmup_steps=2, total_steps=STEPS),
        groups=groups(2.0),
    ),
    dict(
        name="sgd_plain",
        **SGD,
        lr=0.1,
        momentum=0.0,
        nesterov=False,
        weight_decay=0.0,
        schedule=dict(kind="cosine", warmup_steps=0, total_steps=STEPS),
        groups=all_decayed(),
    ),
]


def schedule_table(kind, warmup, total, steps):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = make_schedule(opt, dict(kind=kind, warmup_steps=warmup, total_steps=total))
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return dict(kind=kind, warmup_steps=warmup, total_steps=total, factors=lrs)


SCHEDULES = [
    schedule_table("constant", 0, 10, 13),
    schedule_table("constant_with_warmup", 3, 10, 13),
    schedule_table("linear", 3, 10, 13),
    schedule_table("linear", 0, 10, 13),
    schedule_table("cosine", 3, 10, 15),  # past the end the cosine rises again, as in transformers
    schedule_table("cosine", 0, 10, 13),
    schedule_table("cosine", 10, 10, 12),  # all warmup
]


def clip_case(max_norm):
    params = {name: torch.nn.Parameter(init[name].clone()) for name, _, _, _ in PARAMS}
    for name, p in params.items():
        g = grads[0][name]
        p.grad = None if g is None else g.clone()
    norm = torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm, foreach=False)
    clipped = {n: flat(p.grad) for n, p in params.items() if p.grad is not None}
    return dict(max_norm=max_norm, step=0, total_norm=float(norm), clipped=clipped)


fixture = dict(
    generator="tools/optim_golden.py",
    torch_version=torch.__version__,
    transformers_version=transformers.__version__,
    dtype="float64",
    steps=STEPS,
    params=[dict(name=n, shape=list(s), data=flat(init[n])) for n, s, _, _ in PARAMS],
    grads=[{n: (None if g is None else flat(g)) for n, g in step.items()} for step in grads],
    cases=[run_case(c) for c in CASES],
    schedules=SCHEDULES,
    clip=[clip_case(0.5), clip_case(100.0)],
)

assert all(math.isfinite(x) for c in fixture["cases"] for s in c["params_after"] for v in s.values() for x in v)
os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "w") as f:
    json.dump(fixture, f, indent=1)
    f.write("\n")
print(f"wrote {os.path.normpath(OUT)} (torch {torch.__version__}, transformers {transformers.__version__})")
