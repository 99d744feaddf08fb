#!/usr/bin/env python3
"""Times PyTorch (transformers) embedding the benchmark's 64 sentences with all-MiniLM-L6-v2, as
benches/embed.rs times tunelab: tokenise, one padded batch, mean pooling, L2 normalisation.

Run by hand (needs `pip install torch transformers`):

    python tools/embed_speed.py [MINILM_DIR] [--threads 2]

Prints the median time of one batch and sentences per second. PyTorch runs with the given
thread count and denormals flushed to zero (`torch.set_flush_denormal(True)`), the PyTorch
setting every comparison in benches/README.md uses.
"""

import argparse
import os
import statistics
import time

import torch
import transformers


def sentences():
    """The same 64 sentences as benches/embed.rs."""
    subjects = ["The cat", "A young man", "My neighbour", "The old teacher"]
    verbs = ["quietly reads", "slowly paints", "happily cooks", "carefully fixes"]
    objects = [
        "a long letter for her friend",
        "the red door near the garden",
        "a simple meal before dinner",
        "the broken chair in the kitchen",
    ]
    return [f"{s} {v} {o}." for s in subjects for v in verbs for o in objects]


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    p = argparse.ArgumentParser()
    p.add_argument("model", nargs="?", default=os.path.join(root, "target", "hf", "all-minilm-l6-v2"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=30)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    tok = transformers.AutoTokenizer.from_pretrained(a.model)
    model = transformers.AutoModel.from_pretrained(a.model).eval()
    texts = sentences()

    def embed():
        enc = tok(texts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        mean = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, p=2, dim=1)

    enc = tok(texts)
    n_tokens = sum(len(x) for x in enc["input_ids"])
    for _ in range(3):
        embed()
    times = []
    for _ in range(a.runs):
        t = time.perf_counter()
        embed()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {a.threads} threads: "
        f"{len(texts)} sentences ({n_tokens / len(texts):.1f} tokens each), "
        f"median {med * 1e3:.1f} ms per batch, {len(texts) / med:.0f} sentences/s"
    )


if __name__ == "__main__":
    main()
