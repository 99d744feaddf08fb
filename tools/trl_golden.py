#!/usr/bin/env python3
"""Writes tests/fixtures/trl_preference_golden.json: TRL's own preference losses on fixed
log-probabilities, with their gradients.

Run by hand, never in CI (`pip install trl`, which brings torch and transformers):

    python tools/trl_golden.py

Fixed random sequence log-probabilities (policy and reference, chosen and rejected, with token
counts; batch sizes 1, 3 and 8; several beta, label smoothing, gamma, lambda, KTO weights) go
through TRL's own loss code, in float64, and the script records the loss, TRL's logged rewards
and the gradient of the loss with respect to every policy log-probability (torch autograd).
tests/suite/preference.rs replays every case in tunelab in f64 and asserts the max difference
is under 1e-9.

Which TRL code computes each case, and why:

* DPO (`loss_type="sigmoid"`) and IPO (`"ipo"`): `DPOTrainer._compute_loss`. TRL 1.x has no
  `dpo_loss(policy_chosen_logps, ...)` any more: the loss is computed inside
  `_compute_loss(model, inputs)`, which calls the model with TRL's fused LM head
  (`model(..., labels=..., fused_lm_head=True)`, a `FusedCausalLMOutput` whose `log_probs` are the
  per-token log-probabilities of the labels, zero where the label is -100). The script hands it a
  stand-in model that returns the fixed log-probabilities in that output: a sequence log-prob l
  over n completion tokens as l / n on each, so TRL's own sum over the completion gives l back and
  autograd's gradient with respect to l is the gradient of TRL's loss. The stand-in checks that
  the labels TRL passes mask exactly the positions it fills. The reference log-probs go in as
  TRL's precomputed `ref_chosen_logps` / `ref_rejected_logps` (`precompute_ref_log_probs=True`).
* Conservative DPO (label smoothing): TRL 1.x's DPO trainer applies `label_smoothing` only to the
  robust, EXO and AOT losses, not to "sigmoid" (TRL 0.x's `dpo_loss` applied it to "sigmoid").
  The cDPO formula, -(1-e) log sig(b h) - e log sig(-b h), is `CPOTrainer.cpo_loss` with
  `loss_type="sigmoid"`; called with the log-ratios (log pi - log pi_ref) of chosen and rejected
  as its two inputs, its `logits` is DPO's h.
* SimPO: `CPOTrainer.get_batch_loss_metrics` with `loss_type="simpo"` (its `cpo_loss`, and TRL's
  `losses.mean() + cpo_alpha * nll`), the length-averaged log-probs from TRL's own
  `CPOTrainer.get_batch_logps(average_log_prob=True)`, and the NLL of the chosen responses as a
  given number (a leaf, so its gradient, cpo_alpha, is recorded too). `get_batch_logps` still
  takes logits: stand-in logits over a vocabulary of two tokens, every label token 0, and at each
  completion position [a, 0] with a = l - log(1 - e^l) (so log_softmax gives log sigmoid(a) = l,
  l = sequence log-prob / n); the chain rule through a is 1, so the gradient with respect to the
  sequence log-prob is again TRL's. `concatenated_forward` is replaced by one returning these.
* ORPO: `ORPOTrainer.get_batch_loss_metrics` (its `odds_ratio_loss`, and TRL's
  `nll - losses.mean()`), averaged log-probs from `ORPOTrainer.get_batch_logps`. One change:
  `odds_ratio_loss` upcasts its inputs with `.float()` (float32, for bf16 training), which would
  round the golden values to 1e-7; while it runs, `Tensor.float` is made the identity on float64
  tensors, and nothing else of TRL's code is touched.
* KTO: `KTOTrainer._compute_loss` with the same kind of stand-in model, answering both the main
  batch and the KL batch (the mismatched prompt/completion pairs, whose log-probs are fixed
  numbers, computed by TRL under no_grad); the reference log-probs as TRL's precomputed
  `ref_logps` and `ref_KL_logps`.

`get_batch_loss_metrics` and `_compute_loss` are called unbound with a `types.SimpleNamespace`
standing in for `self`, carrying the attributes they read (beta, loss type, a CPU accelerator
whose gather is the identity, the metrics store).
"""

import collections
import contextlib
import json
import math
import os
import types

import torch
import trl
from trl import DPOTrainer, KTOTrainer
from trl.experimental.cpo import CPOTrainer
from trl.experimental.orpo import ORPOTrainer

OUT = os.path.join(
    os.path.dirname(__file__), "..", "tests", "fixtures", "trl_preference_golden.json"
)

torch.set_default_dtype(torch.float64)
gen = torch.Generator().manual_seed(20261201)
BATCHES = [1, 3, 8]


def uniform(lo, hi, n):
    return (lo + (hi - lo) * torch.rand(n, generator=gen)).tolist()


def counts(n):
    return torch.randint(1, 13, (n,), generator=gen).tolist()


def seq_logps(tokens):
    """Summed log-probs: a mean per-token log-prob in (-2.5, -0.02) times the count (so both sides
    of ORPO's -ln 2 branch occur)."""
    return [n * a for n, a in zip(tokens, uniform(-2.5, -0.02, len(tokens)))]


def near(values, scale):
    noise = (torch.randn(len(values), generator=gen) * scale).tolist()
    return [v + e for v, e in zip(values, noise)]


def accelerator():
    return types.SimpleNamespace(
        device=torch.device("cpu"),
        gather=lambda x: x,
        gather_for_metrics=lambda x: x,
        unwrap_model=lambda m: m,
    )


def stand_in_logits(logps, tokens, width):
    """(N, width, 2) logits whose log-softmax at label 0 is logps[i] / tokens[i] on positions
    0..tokens[i]-1 (predicting the completion tokens 1..tokens[i]); differentiable in logps."""
    rows = []
    for i in range(len(tokens)):
        per_token = logps[i] / tokens[i]
        a = per_token - torch.log(-torch.expm1(per_token))
        row = []
        for t in range(width):
            if t < tokens[i]:
                row.append(torch.stack([a, torch.zeros(())]))
            else:
                row.append(torch.zeros(2))
        rows.append(torch.stack(row))
    return torch.stack(rows)


def fused_stand_in(logps, tokens, width):
    """A model with TRL's fused LM head: `log_probs` (N, width - 1) holds logps[i] / tokens[i] on
    the positions that predict row i's completion tokens 1..tokens[i], 0 elsewhere."""

    def output(labels):
        mask = labels[:, 1:] != -100
        rows = []
        for i, n in enumerate(tokens):
            want = torch.zeros(width - 1, dtype=torch.bool)
            want[:n] = True
            assert torch.equal(mask[i], want), (mask[i], want)
            per = logps[i] / n
            rows.append(torch.stack([per if t < n else torch.zeros(()) for t in range(width - 1)]))
        log_probs = torch.stack(rows)
        zeros = torch.zeros_like(log_probs).detach()
        return types.SimpleNamespace(
            log_probs=log_probs,
            entropy=zeros,
            log_sum_sq_probs=zeros,
            mean_logits=zeros,
            is_top1=torch.zeros_like(mask),
            label_mask=mask,
            aux_loss=None,
        )

    return output


def masks(tokens, width):
    """input_ids (all token 0), attention mask (prompt token + completion) and completion mask
    (positions 1..n), each (N, width)."""
    n = len(tokens)
    ids = torch.zeros((n, width), dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    comp = torch.zeros((n, width), dtype=torch.long)
    for i, k in enumerate(tokens):
        attn[i, : k + 1] = 1
        comp[i, 1 : k + 1] = 1
    return ids, attn, comp


def labels_of(tokens, width):
    """CPO/ORPO labels: -100 on the prompt token and padding, token 0 on the completion."""
    lab = torch.full((len(tokens), width), -100, dtype=torch.long)
    for i, k in enumerate(tokens):
        lab[i, 1 : k + 1] = 0
    return lab


def metrics_store():
    return {"train": collections.defaultdict(list), "eval": collections.defaultdict(list)}


@contextlib.contextmanager
def float64_kept():
    original = torch.Tensor.float

    def keep(self, *args, **kwargs):
        if self.dtype == torch.float64 and not args and not kwargs:
            return self
        return original(self, *args, **kwargs)

    torch.Tensor.float = keep
    try:
        yield
    finally:
        torch.Tensor.float = original


def pair_data(b):
    ct, rt = counts(b), counts(b)
    c, r = seq_logps(ct), seq_logps(rt)
    return dict(
        chosen=c,
        rejected=r,
        chosen_tokens=ct,
        rejected_tokens=rt,
        ref_chosen=near(c, 1.5),
        ref_rejected=near(r, 1.5),
        nll=uniform(0.2, 3.0, 1)[0],
    )


def dpo_case(loss_type, beta, d):
    c = torch.tensor(d["chosen"], requires_grad=True)
    r = torch.tensor(d["rejected"], requires_grad=True)
    tokens = d["chosen_tokens"] + d["rejected_tokens"]
    width = max(tokens) + 1
    ids, attn, comp = masks(tokens, width)
    output = fused_stand_in(torch.cat([c, r]), tokens, width)

    def model(input_ids, labels, fused_lm_head, **kwargs):
        assert fused_lm_head
        return output(labels)

    ns = types.SimpleNamespace(
        model=types.SimpleNamespace(training=True),
        _tp_size=1,
        accelerator=accelerator(),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        f_alpha_divergence_coef=0.5,
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=0.0,
        use_weighting=False,
        _metrics=metrics_store(),
        _total_train_tokens=0,
        args=types.SimpleNamespace(gradient_checkpointing_kwargs=None, discopop_tau=0.05),
    )
    inputs = dict(
        input_ids=ids,
        attention_mask=attn,
        completion_mask=comp,
        ref_chosen_logps=torch.tensor(d["ref_chosen"]),
        ref_rejected_logps=torch.tensor(d["ref_rejected"]),
    )
    loss = DPOTrainer._compute_loss(ns, model, inputs, return_outputs=False)
    loss.backward()
    m = ns._metrics["train"]
    return dict(
        trl_call=f"DPOTrainer._compute_loss(loss_type={loss_type!r})",
        loss=loss.item(),
        grad_chosen=c.grad.tolist(),
        grad_rejected=r.grad.tolist(),
        reward_chosen=m["rewards/chosen"][-1],
        reward_rejected=m["rewards/rejected"][-1],
        margin=m["rewards/margins"][-1],
        accuracy=m["rewards/accuracies"][-1],
    )


def cdpo_case(beta, eps, d):
    c = torch.tensor(d["chosen"], requires_grad=True)
    r = torch.tensor(d["rejected"], requires_grad=True)
    ns = types.SimpleNamespace(
        alpha=0.0, loss_type="sigmoid", beta=beta, label_smoothing=eps, accelerator=accelerator()
    )
    lr_c = c - torch.tensor(d["ref_chosen"])
    lr_r = r - torch.tensor(d["ref_rejected"])
    losses, cr, rr = CPOTrainer.cpo_loss(ns, lr_c, lr_r)
    loss = losses.mean()
    loss.backward()
    return dict(
        trl_call="CPOTrainer.cpo_loss(loss_type='sigmoid') on the log-ratios",
        loss=loss.item(),
        grad_chosen=c.grad.tolist(),
        grad_rejected=r.grad.tolist(),
        reward_chosen=cr.mean().item(),
        reward_rejected=rr.mean().item(),
        margin=(cr - rr).mean().item(),
        accuracy=(cr > rr).double().mean().item(),
    )


def reference_free_case(trainer, extra, d):
    """SimPO (CPOTrainer) or ORPO (ORPOTrainer) through `get_batch_loss_metrics`, with
    `concatenated_forward` answering TRL's averaged log-probs of the stand-in logits."""
    c = torch.tensor(d["chosen"], requires_grad=True)
    r = torch.tensor(d["rejected"], requires_grad=True)
    nll = torch.tensor(d["nll"], requires_grad=True)
    tokens = d["chosen_tokens"] + d["rejected_tokens"]
    width = max(tokens) + 1
    logits = stand_in_logits(torch.cat([c, r]), tokens, width)
    avg = trainer.get_batch_logps(logits, labels_of(tokens, width), average_log_prob=True)
    b = len(d["chosen"])
    ns = types.SimpleNamespace(accelerator=accelerator(), aux_loss_enabled=False, **extra)
    ns.concatenated_forward = lambda model, batch: (avg[:b], avg[b:], logits[:b], logits[b:], nll)
    if trainer is CPOTrainer:
        ns.cpo_loss = lambda *a: CPOTrainer.cpo_loss(ns, *a)
        call = "CPOTrainer.get_batch_loss_metrics(loss_type='simpo')"
    else:
        ns.odds_ratio_loss = lambda *a: ORPOTrainer.odds_ratio_loss(ns, *a)
        call = "ORPOTrainer.get_batch_loss_metrics"
    with float64_kept():
        loss, metrics = trainer.get_batch_loss_metrics(ns, None, {}, train_eval="train")
    loss.backward()
    return dict(
        trl_call=call,
        loss=loss.item(),
        grad_chosen=c.grad.tolist(),
        grad_rejected=r.grad.tolist(),
        grad_nll=nll.grad.item(),
        reward_chosen=float(metrics["rewards/chosen"]),
        reward_rejected=float(metrics["rewards/rejected"]),
        margin=float(metrics["rewards/margins"]),
        accuracy=float(metrics["rewards/accuracies"]),
    )


def kto_data(b, kl_shift):
    tokens = counts(b)
    logps = seq_logps(tokens)
    labels = [bool(x) for x in (torch.rand(b, generator=gen) < 0.5).tolist()]
    if b > 1 and all(labels) or not any(labels):
        labels[0] = not labels[0]
    kl_tokens = counts(b)
    kl = seq_logps(kl_tokens)
    return dict(
        logps=logps,
        tokens=tokens,
        labels=labels,
        ref_logps=near(logps, 1.5),
        kl_logps=kl,
        kl_tokens=kl_tokens,
        ref_kl_logps=[v - kl_shift + e for v, e in zip(kl, near([0.0] * b, 0.3))],
    )


def kto_case(beta, wd, wu, d):
    x = torch.tensor(d["logps"], requires_grad=True)
    tokens, kl_tokens = d["tokens"], d["kl_tokens"]
    width = max(tokens) + 1
    kl_width = max(kl_tokens) + 1
    ids, attn, comp = masks(tokens, width)
    kl_ids, kl_attn, kl_comp = masks(kl_tokens, kl_width)
    main = fused_stand_in(x, tokens, width)
    kl = fused_stand_in(torch.tensor(d["kl_logps"]), kl_tokens, kl_width)
    calls = []

    def model(input_ids, labels, fused_lm_head, **kwargs):
        assert fused_lm_head
        calls.append("kl" if input_ids is kl_ids else "main")
        return (kl if input_ids is kl_ids else main)(labels)

    ns = types.SimpleNamespace(
        model=types.SimpleNamespace(training=True),
        _tp_size=1,
        accelerator=accelerator(),
        aux_loss_enabled=False,
        calculate_KL=True,
        use_liger_kernel=False,
        precompute_ref_logps=True,
        loss_type="kto",
        beta=beta,
        desirable_weight=wd,
        undesirable_weight=wu,
        _metrics=metrics_store(),
        _total_train_tokens=0,
    )
    ns._compute_kl_logps = lambda model, batch: KTOTrainer._compute_kl_logps(ns, model, batch)
    inputs = dict(
        input_ids=ids,
        attention_mask=attn,
        completion_mask=comp,
        KL_input_ids=kl_ids,
        KL_attention_mask=kl_attn,
        KL_completion_mask=kl_comp,
        label=torch.tensor(d["labels"]),
        ref_logps=torch.tensor(d["ref_logps"]),
        ref_KL_logps=torch.tensor(d["ref_kl_logps"]),
    )
    loss = KTOTrainer._compute_loss(ns, model, inputs, return_outputs=False)
    assert sorted(calls) == ["kl", "main"], calls
    loss.backward()
    m = ns._metrics["train"]
    last = lambda k: m[k][-1] if m[k] else None  # noqa: E731
    return dict(
        trl_call="KTOTrainer._compute_loss",
        loss=loss.item(),
        grad_logps=x.grad.tolist(),
        reward_chosen=last("rewards/chosen"),
        reward_rejected=last("rewards/rejected"),
        margin=last("rewards/margins"),
        kl=m["kl"][-1],
    )


def main():
    cases = []

    def add(objective, params, data, result):
        name = f"{objective} B={len(data.get('chosen', data.get('logps')))} " + " ".join(
            f"{k}={v}" for k, v in params.items()
        )
        cases.append(dict(name=name, objective=objective, params=params, **data, **result))

    for b in BATCHES:
        for beta in [0.1, 0.5, 2.0]:
            d = pair_data(b)
            add("sigmoid", dict(beta=beta), d, dpo_case("sigmoid", beta, d))
        for beta, eps in [(0.1, 0.1), (0.5, 0.3)]:
            d = pair_data(b)
            add("cdpo", dict(beta=beta, label_smoothing=eps), d, cdpo_case(beta, eps, d))
        for beta in [0.1, 1.0]:
            d = pair_data(b)
            add("ipo", dict(beta=beta), d, dpo_case("ipo", beta, d))
        for beta, gamma, alpha, eps in [(2.0, 1.0, 0.0, 0.0), (2.5, 1.5, 1.0, 0.0), (0.1, 0.5, 1.0, 0.1)]:
            d = pair_data(b)
            extra = dict(
                loss_type="simpo", beta=beta, simpo_gamma=gamma, cpo_alpha=alpha,
                label_smoothing=eps, alpha=0.0,
            )
            params = dict(beta=beta, simpo_gamma=gamma, cpo_alpha=alpha, label_smoothing=eps)
            add("simpo", params, d, reference_free_case(CPOTrainer, extra, d))
        for lam in [0.1, 1.0]:
            d = pair_data(b)
            add("orpo", dict(beta=lam), d, reference_free_case(ORPOTrainer, dict(beta=lam), d))
        for (beta, wd, wu), shift in zip([(0.1, 1.0, 1.0), (0.5, 1.33, 0.8)], [1.0, -1.0]):
            d = kto_data(b, shift)
            params = dict(beta=beta, desirable_weight=wd, undesirable_weight=wu)
            add("kto", params, d, kto_case(beta, wd, wu, d))

    for c in cases:
        for k, v in c.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise SystemExit(f"{c['name']}: {k} is {v}")
    out = dict(
        trl_version=trl.__version__,
        torch_version=torch.__version__,
        dtype="float64",
        cases=cases,
    )
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.normpath(OUT)} (trl {trl.__version__})")


if __name__ == "__main__":
    main()
