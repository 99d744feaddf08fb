#!/usr/bin/env python3
"""Writes tests/fixtures/trl_grpo_golden.json: TRL's GRPO advantages, loss and gradient on fixed
per-token log-probabilities.

Run by hand, never in CI (needs torch, transformers and trl: `pip install trl`):

    python tools/trl_grpo_golden.py

What is TRL's and what is the stand-in
--------------------------------------
TRL's own code computes every number the fixture records; nothing of it is re-typed here:

- `GRPOConfig`: the options and their checks (`loss_type`, `scale_rewards`, `beta`, `epsilon`,
  `epsilon_high`, `use_bias_correction_kl`, `num_iterations`, `num_generations`,
  `max_completion_length`).
- `GRPOTrainer.__init__`: the trainer's state, and the reference model when beta != 0 (loaded from
  the model's path, as TRL does for a model without PEFT).
- `GRPOTrainer._generate_and_score_completions`: padding prompts and completions, the completion
  mask, calling the reward function, the group-normalised advantages (its `nanstd`, its 1e-4),
  `num_items_in_batch`, and asking for the old policy's log-probabilities (num_iterations = 2) and
  the reference's (beta != 0).
- `GRPOTrainer._compute_loss`: the ratio, the clip, the min, the k3 KL, the loss normalisation of
  each `loss_type`, which tensors are detached; and its logged `kl` and `clip_ratio/*` (TRL casts
  the clipped booleans to float32 before averaging them: the clip ratios have float32 precision).

The stand-in replaces the two places where TRL runs a language model, and nothing else:

1. `GRPOTrainer._get_per_token_logps_and_entropies` (the model's forward, log-softmax and gather)
   is replaced by a function returning the case's fixed per-token log-probabilities (B, T): the
   reference's when TRL passes its reference model, the old policy's when TRL asks without entropy
   (the no-grad call of `_generate_and_score_completions` that num_iterations = 2 triggers), and
   the policy's when TRL asks with entropy (the call in `_compute_loss`), as a leaf tensor with
   requires_grad: its `.grad` after `loss.backward()` is the gradient recorded. Entropies are
   zeros (TRL only logs them with the default `top_entropy_quantile = 1`).
2. `GRPOTrainer._generate` (sampling) is replaced by a function returning the cases' fixed prompt
   and completion token ids (of different lengths; TRL pads them and builds the masks).

The model TRL is given is a 1-layer Llama of width 8 built from a config and saved to a temporary
directory (no download); its outputs are never used. The tokenizer is tunelab's own
models/gpt-tiny/tokenizer.json. The reward function is an ordinary TRL reward function (user code
in TRL too) returning the case's rewards, which are dyadic so that TRL's float32 reward tensor
holds them exactly. Everything runs in float64 (`torch.set_default_dtype`).

The Training loop's own state that `_compute_loss` reads is set as the loop would set it with
gradient_accumulation_steps = 1: `model.train()` and `current_gradient_accumulation_steps = 1`.

tests/suite/grpo.rs replays every case in tunelab in f64 (advantages from the rewards, the loss
and its gradient with respect to the policy's log-probabilities, the KL and clip ratios) and
asserts every difference is under 1e-9, printing the largest.
"""

import json
import math
import os
import tempfile

import torch
import transformers
import trl
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import GRPOConfig, GRPOTrainer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "trl_grpo_golden.json")
TOKENIZER = os.path.join(ROOT, "models", "gpt-tiny", "tokenizer.json")

torch.set_default_dtype(torch.float64)
gen = torch.Generator().manual_seed(17)

G = 4  # num_generations
PROMPTS = ["Request: Add two and three.\nCode:", "Request: How old is Ana Lopez?\nCode:"]
# Completion lengths (tokens, the last one the end token when the completion stopped), group by group.
LENGTHS = [5, 3, 4, 1, 2, 5, 5, 3]
B, T = len(LENGTHS), max(LENGTHS)
MAX_COMPLETION_LENGTH = 6
EOS, PAD = 0, 1

# Fixed token ids: ordinary tokens, the end token at the end of every completion shorter than the budget.
completion_ids = []
for i, n in enumerate(LENGTHS):
    ids = [30 + (7 * i + 3 * j) % 60 for j in range(n)]
    if n < T:
        ids[-1] = EOS
    completion_ids.append(ids)
prompt_ids = [[40 + (5 * i + j) % 50 for j in range(3 + i % 2)] for i in range(B)]

# Per-token log-probabilities (B, T), values at padded positions too (TRL masks them).
policy = -torch.rand(B, T, generator=gen) * 2.5 - 0.05
old = policy + 0.3 * torch.randn(B, T, generator=gen)  # ratios about e^±0.3: some clipped at ε = 0.2
ref = policy + 0.5 * torch.randn(B, T, generator=gen)

REWARDS = {
    # one group with distinct rewards, one with some equal
    "mixed": [1.0, 0.0, 0.0, 0.0, 0.25, 1.5, -1.0, 0.75],
    # the second group all equal: zero std, advantages 0 / (0 + 1e-4) = 0
    "flat_group": [1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5],
}


def flat2(t):
    return [[float(x) for x in row] for row in t.tolist()]


def make_model_dir():
    d = tempfile.mkdtemp(prefix="trl-grpo-golden-")
    tok = PreTrainedTokenizerFast(tokenizer_file=TOKENIZER, eos_token="<|endoftext|>", pad_token="<pad>")
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        eos_token_id=EOS,
        pad_token_id=PAD,
        bos_token_id=EOS,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(d)
    tok.save_pretrained(d)
    return d, tok


MODEL_DIR, TOK = make_model_dir()


def run_case(loss_type, scale_rewards, beta, epsilon, epsilon_high, num_iterations, bias_correction, rewards_name):
    rewards = REWARDS[rewards_name]

    def reward_func(prompts, completions, **kwargs):  # a TRL reward function (user code)
        assert len(completions) == B
        return list(rewards)

    out_dir = tempfile.mkdtemp(prefix="trl-grpo-run-")
    args = GRPOConfig(
        output_dir=out_dir,
        per_device_train_batch_size=B,
        gradient_accumulation_steps=1,
        num_generations=G,
        num_iterations=num_iterations,
        max_completion_length=MAX_COMPLETION_LENGTH,
        loss_type=loss_type,
        scale_rewards=scale_rewards,
        beta=beta,
        epsilon=epsilon,
        epsilon_high=epsilon_high,
        use_bias_correction_kl=bias_correction,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        seed=0,
    )
    dataset = Dataset.from_dict({"prompt": PROMPTS})
    trainer = GRPOTrainer(
        model=MODEL_DIR,
        reward_funcs=reward_func,
        args=args,
        train_dataset=dataset,
        processing_class=TOK,
    )
    # The Training loop's state with gradient_accumulation_steps = 1 (see the docstring).
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1

    policy_leaf = policy.clone().requires_grad_(True)
    calls = []

    # --- stand-in 1: the model's per-token log-probabilities ---
    def per_token_logps(model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                        compute_entropy=False, compute_aux_loss=False, **kwargs):
        assert logits_to_keep == T, (logits_to_keep, T)
        assert input_ids.shape[0] == B
        if trainer.ref_model is not None and model is trainer.ref_model:
            calls.append("ref")
            return ref.clone(), None, None
        if compute_entropy:
            calls.append("policy")
            return policy_leaf, torch.zeros(B, T), None
        calls.append("old")
        return old.clone(), None, None

    # --- stand-in 2: sampling ---
    def generate(prompts):
        assert len(prompts) == B
        completions = TOK.batch_decode(completion_ids, skip_special_tokens=True)
        return prompt_ids, completion_ids, None, completions, None, {}, None, []

    trainer._get_per_token_logps_and_entropies = per_token_logps
    trainer._generate = generate

    # TRL's sampler repeats each prompt num_generations times, consecutively.
    inputs = [{"prompt": p} for p in PROMPTS for _ in range(G)]
    batch = trainer._generate_and_score_completions(inputs)
    loss = trainer._compute_loss(trainer.model, batch)
    loss.backward()

    m = trainer._metrics["train"]
    expected_calls = (["old"] if num_iterations > 1 else []) + (["ref"] if beta != 0.0 else []) + ["policy"]
    assert calls == expected_calls, (calls, expected_calls)
    mask = batch["completion_mask"]
    assert mask.shape == (B, T) and mask.sum(-1).tolist() == LENGTHS, mask
    return dict(
        loss_type=loss_type,
        scale_rewards=scale_rewards,
        beta=beta,
        epsilon=epsilon,
        epsilon_high=epsilon_high,
        epsilon_high_used=trainer.epsilon_high,
        num_iterations=num_iterations,
        use_bias_correction_kl=bias_correction,
        old_is_policy=num_iterations == 1,
        rewards=rewards_name,
        advantages=[float(a) for a in batch["advantages"].reshape(-1).tolist()],
        num_items_in_batch=int(batch["num_items_in_batch"]),
        loss=float(loss.detach()),
        grad=flat2(policy_leaf.grad),
        kl=(float(m["kl"][-1]) if beta != 0.0 else None),
        clip_ratio=dict(
            low=float(m["clip_ratio/low_mean"][-1]),
            high=float(m["clip_ratio/high_mean"][-1]),
            region=float(m["clip_ratio/region_mean"][-1]),
        ),
    )


CASES = []
for loss_type in ["grpo", "bnpo", "dr_grpo", "dapo"]:
    # Every loss normalisation with the group scale: one step per rollout (old = policy.detach(),
    # ρ = 1, ε has no effect) and two iterations (TRL computes old log-probs: symmetric clip and
    # DAPO's clip-higher); without a KL, and with one with and without the bias correction.
    for beta, bias in [(0.0, True), (0.04, True), (0.04, False)]:
        CASES.append((loss_type, "group", beta, 0.2, None, 1, bias, "mixed"))
        for eps_high in [None, 0.28]:
            CASES.append((loss_type, "group", beta, 0.2, eps_high, 2, bias, "mixed"))
    CASES.append((loss_type, "group", 0.04, 0.2, 0.28, 2, True, "flat_group"))
    # The other reward scalings (they change the advantages only).
    for scale_rewards in ["batch", "none"]:
        CASES.append((loss_type, scale_rewards, 0.04, 0.2, None, 1, True, "mixed"))
        CASES.append((loss_type, scale_rewards, 0.04, 0.2, 0.28, 2, True, "mixed"))
        CASES.append((loss_type, scale_rewards, 0.04, 0.2, 0.28, 2, True, "flat_group"))

results = [run_case(*c) for c in CASES]

fixture = dict(
    generator="tools/trl_grpo_golden.py",
    trl_version=trl.__version__,
    torch_version=torch.__version__,
    transformers_version=transformers.__version__,
    dtype="float64",
    num_generations=G,
    max_completion_length=MAX_COMPLETION_LENGTH,
    completion_lengths=LENGTHS,
    policy_logps=flat2(policy),
    old_logps=flat2(old),
    ref_logps=flat2(ref),
    rewards=REWARDS,
    cases=results,
)

assert all(math.isfinite(c["loss"]) for c in results)
assert any(c["clip_ratio"]["region"] > 0 for c in results), "no case clips: the fixture would not test the clip"
os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "w") as f:
    json.dump(fixture, f, indent=1)
    f.write("\n")
print(f"wrote {os.path.normpath(OUT)}: {len(results)} cases (trl {trl.__version__}, torch {torch.__version__})")
