#!/usr/bin/env python3
"""Writes tests/fixtures/trl_reward_golden.json: TRL's RewardTrainer loss on fixed rewards.

Run by hand, never in CI (needs torch and trl: `pip install trl`):

    python tools/trl_reward_golden.py

The loss is TRL's own code: `RewardTrainer.compute_loss`, called here on a stand-in model whose
forward returns fixed logits (the rewards) and on a stand-in for the trainer that carries only
what compute_loss reads (`args.center_rewards_coefficient`, `model.training`, the accelerator's
gather functions, the metrics dict, the token count and the tensor-parallel degree). Building a
real RewardTrainer would need a model, a tokenizer and a dataset only to reach the same lines;
calling the method unbound runs exactly the code a training step runs. compute_loss runs the
model once on the chosen and rejected rows concatenated and splits its (2N, 1) logits with
`torch.chunk` (TRL 1.x; older TRL called the model twice, on `input_ids_chosen` and
`input_ids_rejected`: the stand-in model answers both calling conventions). The loss is then

    -logsigmoid(r_c - r_r [- margin]).mean() [+ eta * mean((r_c + r_r) ** 2)]

and the gradient with respect to the rewards is torch.autograd's through that loss. The
accuracy and the mean margin are the trainer's own metrics of the same call.

Cases, all float64: a hand-sized pair, random rewards with and without
center_rewards_coefficient, TRL's `margin` column, and rewards far apart (where a naive log(sigmoid)
overflows). tests/suite/reward.rs replays each and asserts the max difference is under 1e-9.
"""

import json
import os
import types
from collections import defaultdict

import torch
import trl
from transformers.modeling_outputs import SequenceClassifierOutput
from trl import RewardTrainer

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "trl_reward_golden.json")

torch.set_default_dtype(torch.float64)
gen = torch.Generator().manual_seed(1717)


class FixedRewards(torch.nn.Module):
    """A 'model' whose logits are the given rewards, whatever the token ids."""

    def __init__(self, chosen, rejected, ids_all, ids_chosen, ids_rejected):
        super().__init__()
        self.chosen, self.rejected = chosen, rejected
        self.ids_all, self.ids_chosen, self.ids_rejected = ids_all, ids_chosen, ids_rejected

    def forward(self, input_ids=None, **_):
        if input_ids is self.ids_chosen:
            logits = self.chosen.unsqueeze(-1)
        elif input_ids is self.ids_rejected:
            logits = self.rejected.unsqueeze(-1)
        else:
            assert input_ids is self.ids_all, "compute_loss passed ids this stand-in does not know"
            logits = torch.cat([self.chosen, self.rejected]).unsqueeze(-1)
        return SequenceClassifierOutput(logits=logits)


class Gather:
    """A single process: gathering is the identity."""

    def gather(self, x):
        return x

    def gather_for_metrics(self, x):
        return x


def trl_case(name, chosen, rejected, margin=None, center=None):
    n = len(chosen)
    rc = torch.tensor(chosen, requires_grad=True)
    rr = torch.tensor(rejected, requires_grad=True)
    ids_chosen = torch.zeros(n, 3, dtype=torch.long)
    ids_rejected = torch.ones(n, 3, dtype=torch.long)
    ids_all = torch.cat([ids_chosen, ids_rejected])
    model = FixedRewards(rc, rr, ids_all, ids_chosen, ids_rejected)
    model.train()
    trainer = types.SimpleNamespace(
        model=model,
        args=types.SimpleNamespace(center_rewards_coefficient=center),
        accelerator=Gather(),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,  # tensor-parallel degree (TRL 1.x divides the token count by it)
    )
    ones = torch.ones(n, 3, dtype=torch.long)
    inputs = {
        "input_ids": ids_all,
        "attention_mask": torch.cat([ones, ones]),
        "input_ids_chosen": ids_chosen,
        "attention_mask_chosen": ones,
        "input_ids_rejected": ids_rejected,
        "attention_mask_rejected": ones,
    }
    if margin is not None:
        inputs["margin"] = torch.tensor(margin)
    loss = RewardTrainer.compute_loss(trainer, model, inputs)
    loss.backward()
    metrics = trainer._metrics["train"]
    case = {
        "name": name,
        "chosen": chosen,
        "rejected": rejected,
        "margin": margin,
        "center_rewards_coefficient": center,
        "loss": loss.item(),
        "grad_chosen": rc.grad.tolist(),
        "grad_rejected": rr.grad.tolist(),
        "accuracy": metrics["accuracy"][-1],
        "margin_mean": metrics["margin"][-1],
    }
    print(f"{name:<28} loss {case['loss']:.12f} accuracy {case['accuracy']:.3f}")
    return case


def randn(n, scale):
    return (torch.randn(n, generator=gen) * scale).tolist()


def main():
    chosen, rejected = randn(16, 2.0), randn(16, 2.0)
    margins = (torch.rand(16, generator=gen)).tolist()
    cases = [
        trl_case("hand", [2.0, 0.0], [0.0, 0.0]),
        trl_case("random", chosen, rejected),
        trl_case("random_center_0.01", chosen, rejected, center=0.01),
        trl_case("random_center_0.5", chosen, rejected, center=0.5),
        trl_case("random_margin", chosen, rejected, margin=margins),
        trl_case("random_margin_center", chosen, rejected, margin=margins, center=0.1),
        trl_case("far_apart", [40.0, -40.0, 300.0, 0.5], [-40.0, 40.0, -300.0, 0.5]),
        trl_case("one_pair", [0.25], [1.75], center=0.01),
    ]
    out = {
        "torch_version": torch.__version__,
        "trl_version": trl.__version__,
        "cases": cases,
    }
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)}: {len(cases)} cases, trl {trl.__version__}")


if __name__ == "__main__":
    main()
