#!/usr/bin/env python3
"""Writes tests/fixtures/qlora_golden.safetensors: transformers' logits with the block Linears
stored as bitsandbytes stores them, for `tunelab logits --base-dtype bf16|nf4`.

Run by hand, never in CI (needs torch, transformers, bitsandbytes, safetensors; bitsandbytes'
4-bit functions run on CPU):

    pip install torch transformers bitsandbytes safetensors
    python tools/qlora_golden.py

For each model (the random GPT-2 and BERT fixtures under tests/fixtures/hf/, and the shipped
models/gpt-tiny), every Linear of the blocks (GPT-2: attn.c_attn, attn.c_proj, mlp.c_fc,
mlp.c_proj, Conv1D weights transposed to nn.Linear's (out, in) first, as bitsandbytes'
integration does; BERT: attention.self.query/key/value, attention.output.dense,
intermediate.dense, output.dense) is replaced by its round trip through

  bf16    weight.to(torch.bfloat16).float()
  nf4     bitsandbytes.functional.quantize_4bit(W, blocksize=64, quant_type="nf4"), without
          and with compress_statistics (double quantisation), then bitsandbytes' reference
          dequantisation (its default backend, blocks over the flattened weight as its CUDA
          kernel computes them; see round_trip for why not its native CPU kernel)

and the model's logits (GPT-2: LM head at every position; BERT: masked-LM head) are recorded:
`<model>.input_ids` (stored as F32) and `<model>.logits.<dtype>` for dtype f32, bf16, nf4, nf4dq.
Embeddings, LayerNorms, biases and heads (BERT's pooler and the MLM transform included) stay
f32: tunelab quantises exactly the block Linears. tests/suite/nf4.rs loads each model with
--base-dtype and asserts its logits equal these, printing the max difference.
"""

import os

import bitsandbytes.functional as BF
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
from bitsandbytes.backends.utils import _get_4bit_code
import torch
import transformers
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "qlora_golden.safetensors")

GPT2_BLOCK = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
BERT_BLOCK = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)


def round_trip(w_out_in, dtype):
    w = w_out_in.contiguous().float()
    if dtype == "bf16":
        return w.to(torch.bfloat16).float()
    q, state = BF.quantize_4bit(
        w, blocksize=64, quant_type="nf4", compress_statistics=(dtype == "nf4dq")
    )
    # The constants, as dequantize_4bit recovers them (double quantisation undone first).
    absmax = state.absmax
    if state.nested:
        absmax = BF.dequantize_blockwise(state.absmax, state.state2) + state.offset
    # bitsandbytes' reference dequantisation (its "default" backend, what its CUDA kernel
    # computes): blocks of 64 over the flattened weight. Its native CPU kernel (0.50.2) indexes
    # the constants per row instead and disagrees with it when in_features is not a multiple of
    # 64 (gpt2-tiny's 48), so it is not used here; where rows are whole blocks the two agree,
    # which this script asserts.
    ref = _dequantize_4bit_compute(
        q.reshape(-1).view(torch.uint8), absmax.float(), _get_4bit_code("nf4", "cpu"), 64, w.shape,
        torch.float32,
    )
    if w.shape[-1] % 64 == 0:
        assert torch.equal(ref, BF.dequantize_4bit(q, state).float()), "CPU kernel disagrees"
    return ref.reshape(w.shape)


def block_linears(model, kind):
    for name, module in model.named_modules():
        if kind == "gpt2":
            if ".h." in "." + name and name.endswith(GPT2_BLOCK):
                yield name, module, True  # Conv1D: weight (in, out)
        else:
            if ".layer." in name and name.endswith(BERT_BLOCK):
                yield name, module, False


def logits(model, kind, ids):
    with torch.no_grad():
        if kind == "gpt2":
            return model(input_ids=ids).logits
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def main():
    cases = [
        ("gpt2_tiny", os.path.join(ROOT, "tests", "fixtures", "hf", "gpt2-tiny"), "gpt2"),
        ("gpt_tiny", os.path.join(ROOT, "models", "gpt-tiny"), "gpt2"),
        ("bert_tiny", os.path.join(ROOT, "tests", "fixtures", "hf", "bert-tiny"), "bert"),
    ]
    out = {}
    g = torch.Generator().manual_seed(0)
    for key, path, kind in cases:
        cls = transformers.GPT2LMHeadModel if kind == "gpt2" else transformers.BertForMaskedLM
        base = cls.from_pretrained(path, torch_dtype=torch.float32).eval()
        vocab = base.config.vocab_size
        ids = torch.randint(0, vocab, (1, 12), generator=g)
        out[f"{key}.input_ids"] = ids.float()
        for dtype in ("f32", "bf16", "nf4", "nf4dq"):
            model = cls.from_pretrained(path, torch_dtype=torch.float32).eval()
            n = 0
            for name, module, conv1d in block_linears(model, kind):
                w = module.weight.data
                w_oi = w.t() if conv1d else w
                if dtype != "f32":
                    back = round_trip(w_oi, dtype)
                    module.weight.data = (back.t() if conv1d else back).contiguous()
                n += 1
            assert n > 0, f"no block Linears found in {path}"
            out[f"{key}.logits.{dtype}"] = logits(model, kind, ids)[0].contiguous()
            print(f"{key} {dtype}: {n} Linears, logits {tuple(out[f'{key}.logits.{dtype}'].shape)}")
    save_file(out, OUT)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
