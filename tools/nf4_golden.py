#!/usr/bin/env python3
"""Writes tests/fixtures/nf4_golden.json: bitsandbytes' own NF4 quantisation on fixed tensors.

Run by hand, never in CI (needs torch and bitsandbytes, which runs on CPU since 0.45):

    pip install torch bitsandbytes
    python tools/nf4_golden.py

For each tensor, bitsandbytes.functional.quantize_4bit(A, blocksize, quant_type="nf4") is called
with and without compress_statistics (QLoRA's double quantisation: the f32 absmax constants,
minus their mean, quantised again to 8 bits in blocks of 256 with bitsandbytes' dynamic map), and
dequantize_4bit undoes it. Recorded: the packed 4-bit codes (two per byte, the first value in the
high nibble), the absmax constants (or their 8-bit codes, offset and second-level absmax), and
the dequantised values. Also the NF4 code book and the dynamic map, as bitsandbytes builds them.
Every float array is float32, written as one hex string of its big-endian bits (8 digits a
value); every code array as one hex string of its bytes. tests/suite/nf4.rs replays each
case and asserts every code and every dequantised value equal, reporting the max difference.
"""

import json
import os

import bitsandbytes
import bitsandbytes.functional as F
import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "nf4_golden.json")


def floats(t):
    """A float32 tensor as one hex string, 8 digits (the big-endian bits) per value: exact, compact."""
    return t.reshape(-1).to(torch.float32).numpy().astype(">f4").tobytes().hex()


def codes(t):
    """A uint8 tensor as one hex string, 2 digits per byte."""
    return t.reshape(-1).to(torch.uint8).numpy().tobytes().hex()


def case(name, a, blocksize=64, dequantized=True):
    a = a.to(torch.float32).contiguous()
    q, s = F.quantize_4bit(a, blocksize=blocksize, quant_type="nf4", compress_statistics=False)
    qd, sd = F.quantize_4bit(a, blocksize=blocksize, quant_type="nf4", compress_statistics=True)
    assert torch.equal(q, qd), "the 4-bit codes do not depend on double quantisation"
    return {
        "name": name,
        "shape": list(a.shape),
        "blocksize": blocksize,
        "input": floats(a),
        "packed": codes(q),
        "absmax": floats(s.absmax),
        "dequantized": floats(F.dequantize_4bit(q, s)) if dequantized else None,
        "double": {
            "offset": floats(sd.offset),
            "absmax_codes": codes(sd.absmax),
            "absmax2": floats(sd.state2.absmax),
            "blocksize2": sd.state2.blocksize,
            "dequantized": floats(F.dequantize_4bit(qd, sd)) if dequantized else None,
        },
    }


def main():
    g = torch.Generator().manual_seed(0)
    randn = lambda *s: torch.randn(*s, generator=g)
    cases = [
        case("normal 8x64", randn(8, 64)),
        case("normal 4x128, scaled", 0.02 * randn(4, 128)),
        # 300 values: four full blocks of 64 and a last block of 44.
        case("remainder 3x100", randn(3, 100)),
        # An odd count: the last byte's low nibble is padding.
        case("odd 1x65", randn(1, 65)),
        case("a zero block", torch.cat([torch.zeros(1, 64), randn(1, 64)], dim=1)),
        case("outliers", randn(4, 64) * torch.tensor([1.0, 1.0, 50.0, 1.0]).repeat_interleave(64).reshape(4, 64)),
        # Values exactly at each midpoint between NF4 levels (times absmax 1).
        case("midpoints", torch.cat([torch.tensor([1.0]), (F.get_4bit_type("nf4", device="cpu")[:-1] + F.get_4bit_type("nf4", device="cpu")[1:]) / 2,
                                     torch.linspace(-1, 1, 48)]).reshape(1, 64)),
        # Enough blocks (264 > 256) that the double quantisation has two second-level blocks; the
        # dequantised values are left out (the codes and constants determine them) to keep the
        # file small.
        case("many blocks 264x32", randn(264, 32), blocksize=32, dequantized=False),
        case("blocksize 128", randn(4, 256), blocksize=128),
        case("weights 0.1 uniform", (torch.rand(8, 64, generator=g) - 0.5) * 0.2),
    ]
    out = {
        "bitsandbytes": bitsandbytes.__version__,
        "torch": torch.__version__,
        "nf4_code": floats(F.get_4bit_type("nf4", device="cpu")),
        "dynamic_map": floats(F.create_dynamic_map(signed=True)),
        "cases": cases,
    }
    with open(OUT, "w") as f:
        json.dump(out, f)
    print(f"wrote {OUT}: {len(cases)} cases, bitsandbytes {bitsandbytes.__version__}")


if __name__ == "__main__":
    main()
