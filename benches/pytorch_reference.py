#!/usr/bin/env python3
"""The benchmark GPT in PyTorch and in tunelab, side by side in one run, and the tunelab /
PyTorch ratios.

Run by hand (not in CI), on a quiet machine (nothing else running: the load average before and
after is printed):

    pip install torch peft numpy
    cargo build --release --example step_time
    CARGO_TARGET_DIR=target/blas cargo build --release --features blas --example step_time
    python3 benches/pytorch_reference.py --tunelab default=target/release/examples/step_time \
        --tunelab blas=target/blas/release/examples/step_time [--steps 5] [--threads 2]

Each case runs every tunelab binary (`examples/step_time.rs`: warm-up steps, then the median of
the timed ones, and the activation memory the tape held) and then PyTorch with its defaults and
with flushed denormals, one after the other, so that all of them see the same machine. Without
--tunelab, tunelab's times are read from criterion's results as before.

The model matches tunelab::lab::bench: GPT-2 wiring (pre-LN, causal, tied head, tanh GELU),
dropout off, L = 4, T = 128, B = 8, V = 4096, C = 256 with NH = 4 and C = 512 with NH = 8; one
step is forward, cross-entropy, backward, AdamW (lr 1e-4, PyTorch defaults), zero_grad. q, k and v
are separate Linears so that PEFT can put LoRA (r = 8, alpha = 16) on q and v only, as tunelab's
`lora_r8_qv` does on the q and v columns of its fused c_attn.

tunelab's times are read from criterion's estimates (mean) under target/criterion/
train_step_d{256,512}_{matrixmultiply,blas}/<method>/new/estimates.json, and its matmul
throughput from target/criterion/matmul_square/<backend>/1024/; missing ones are reported as
missing. PyTorch runs with the given thread count, once with its defaults and once with
torch.set_flush_denormal(True); ratios are against the faster of the two. numpy's float32 matmul
at 1024 (OpenBLAS) is the machine's sgemm peak reference.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRITERION = ROOT / "target" / "criterion"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=5, help="timed steps per case (after 2 warm-up)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument(
        "--tunelab",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a step_time binary to time beside PyTorch (repeat for each backend)",
    )
    return p.parse_args()


ARGS = parse_args()
# numpy's OpenBLAS reads its thread count when it loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(ARGS.threads))
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(ARGS.threads)
V, L, T, B = 4096, 4, 128, 8


class Block(nn.Module):
    def __init__(self, c, nh):
        super().__init__()
        self.nh = nh
        self.ln_1 = nn.LayerNorm(c)
        self.q_proj = nn.Linear(c, c)
        self.k_proj = nn.Linear(c, c)
        self.v_proj = nn.Linear(c, c)
        self.c_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c)
        self.c_fc = nn.Linear(c, 4 * c)
        self.mlp_proj = nn.Linear(4 * c, c)

    def forward(self, x):
        b, t, c = x.shape
        h = self.ln_1(x)
        q, k, v = (
            p(h).view(b, t, self.nh, c // self.nh).transpose(1, 2)
            for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(b, t, c))
        h = F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")
        return x + self.mlp_proj(h)


class GPT(nn.Module):
    def __init__(self, c, nh):
        super().__init__()
        self.wte = nn.Embedding(V, c)
        self.wpe = nn.Embedding(T, c)
        self.h = nn.ModuleList(Block(c, nh) for _ in range(L))
        self.ln_f = nn.LayerNorm(c)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)

    def forward(self, ids, targets):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for blk in self.h:
            x = blk(x)
        logits = self.ln_f(x) @ self.wte.weight.t()  # tied head
        return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))


def model_flops(c):
    """Matmul FLOPs of one step: 3x the forward (the count tunelab's kernels report)."""
    fwd = 2 * B * T * (L * 12 * c * c + c * V) + L * 4 * B * T * T * c
    return 3 * fwd


def time_step(c, method, flush):
    torch.manual_seed(0)
    torch.set_flush_denormal(flush)
    model = GPT(c, c // 64)
    if method == "lora_r8_qv":
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
        model = get_peft_model(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    g = torch.Generator().manual_seed(3)
    data = torch.randint(0, V, (B, T + 1), generator=g)
    ids, targets = data[:, :-1], data[:, 1:]
    times = []
    for i in range(2 + ARGS.steps):
        t0 = time.perf_counter()
        loss = model(ids, targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    torch.set_flush_denormal(False)
    return statistics.median(times) * 1e3


def sgemm_gflops(fn, n=1024, reps=10):
    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    fn(a, b)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def tunelab_step(binary, c, method, extra=()):
    """Median step ms (after 2 warm-up steps) and activation MB of a step_time binary."""
    import re
    import subprocess

    env = dict(os.environ, TUNELAB_THREADS=str(ARGS.threads))
    cmd = [binary, str(c), method, str(2 + ARGS.steps), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    steps = re.findall(r"step (\d+): ([0-9.]+) ms.*activations ([0-9.]+) MB, peak ([0-9.]+) MB", out)
    times = [float(ms) for k, ms, _, _ in steps if int(k) >= 2]
    return statistics.median(times), float(steps[-1][2]), float(steps[-1][3])


def cpu_model():
    """The CPU's model name and the vector instruction sets that matter for sgemm."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    name = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), [])
    isa = [f for f in ("avx2", "fma", "avx512f") if f in flags]
    return f"{name} ({', '.join(isa) or 'no AVX2'}{'' if 'avx512f' in flags else ', no AVX-512'})"


def side_by_side(out, peak):
    """Every case: each tunelab binary, then PyTorch default and flushed, back to back."""
    binaries = [t.split("=", 1) for t in ARGS.tunelab]
    names = [n for n, _ in binaries]
    cols = "".join(f" {n + ' ms':>13} {'ratio ' + n:>12}" for n in names)
    print(f"{'case':<22} {'torch ms':>9} {'flushed':>9}{cols} {'GFLOP/s':>8} {'activ MB':>9} {'peak MB':>8}")
    rows = []
    methods = ("full", "lora_r8_qv", "houlsby_16", "bitfit", "ia3", "prefix_10", "prompt_10")
    cases = [(256, m, ()) for m in methods]
    # The memory table: every method again with its blocks recomputed in backward.
    cases += [(256, m, ("--gradient-checkpointing",)) for m in methods]
    cases += [(512, m, ()) for m in ("full", "lora_r8_qv")]
    for c, method, extra in cases:
        label = f"d{c}_{method}" + ("_ckpt" if extra else "")
        row = {"case": label}
        for name, binary in binaries:
            ms, mb, peak_mb = tunelab_step(binary, c, method, extra)
            row[f"tunelab_{name}_ms"] = ms
            # Memory does not depend on the backend: the last binary's figures stand for all.
            row["tunelab_activation_mb"], row["tunelab_peak_mb"] = mb, peak_mb
        # PyTorch has the same model for full and LoRA; the other methods are tunelab-only rows
        # (their target is a fraction of tunelab's own full step).
        torch_case = method in ("full", "lora_r8_qv") and not extra
        if torch_case:
            row["torch_ms"] = time_step(c, method, False)
            row["torch_flushed_ms"] = time_step(c, method, True)
            best = min(row["torch_ms"], row["torch_flushed_ms"])
        flops = model_flops(c) if method == "full" and not extra else None
        fastest = min(row[f"tunelab_{n}_ms"] for n in names)
        row["tunelab_model_gflops"] = None if flops is None else flops / (fastest / 1e3) / 1e9
        cells = ""
        for n in names:
            ratio = row[f"tunelab_{n}_ms"] / best if torch_case else None
            row[f"ratio_{n}"] = ratio
            cells += f" {row[f'tunelab_{n}_ms']:>13.1f} {fmt(ratio, '.2f'):>12}"
        t, f = (row.get("torch_ms"), row.get("torch_flushed_ms"))
        print(
            f"{label:<22} {fmt(t):>9} {fmt(f):>9}{cells} {fmt(row['tunelab_model_gflops']):>8}"
            f" {row['tunelab_activation_mb']:>9.1f} {row['tunelab_peak_mb']:>8.1f}"
        )
        rows.append(row)
    out["rows"] = rows
    if peak:
        out["pct_of_numpy_sgemm_full_d512"] = next(
            (100 * r["tunelab_model_gflops"] / peak for r in rows if r["case"] == "d512_full"), None
        )


def criterion_ms(*parts):
    f = CRITERION.joinpath(*parts, "new", "estimates.json")
    if not f.exists():
        return None
    return json.loads(f.read_text())["mean"]["point_estimate"] / 1e6


def load():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def fmt(x, spec=".1f"):
    return "missing" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def main():
    out = {"threads": ARGS.threads, "torch": torch.__version__, "load_before": load()}
    out["cpu"] = cpu_model()
    peak = sgemm_gflops(np.matmul)
    torch_mm = sgemm_gflops(lambda a, b: torch.from_numpy(a) @ torch.from_numpy(b))
    out.update(numpy_sgemm_gflops_1024=peak, torch_mm_gflops_1024=torch_mm)
    print(f"machine: {out['cpu']}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {ARGS.threads} threads")
    print(f"sgemm 1024: numpy {peak:.1f} GFLOP/s, torch.mm {torch_mm:.1f} GFLOP/s")
    if ARGS.tunelab:
        print()
        side_by_side(out, peak)
        out["load_after"] = load()
        print(f"\nload average (1 min): {out['load_before']:.2f} before, {out['load_after']:.2f} after")
        print("ratio = tunelab ms / the faster PyTorch mode (below 1: tunelab is faster)")
        print("activ MB: what the tape held for backward; peak MB: all memory allocated at the step's peak, above the model")
        print("GFLOP/s: model matmul FLOPs of the full step per second, on the faster tunelab binary")
        if ARGS.json:
            ARGS.json.write_text(json.dumps(out, indent=2))
        return 0
    for backend in ("matrixmultiply", "blas"):
        ms = criterion_ms("matmul_square", backend, "1024")
        gf = None if ms is None else 2 * 1024**3 / (ms / 1e3) / 1e9
        out[f"tunelab_{backend}_gflops_1024"] = gf
        ratio = None if gf is None else 100 * gf / peak
        print(f"  tunelab {backend:>14}: {fmt(gf)} GFLOP/s ({fmt(ratio, '.0f')}% of numpy)")
    print()
    header = (
        f"{'case':<18} {'torch ms':>9} {'flushed':>9} {'tunelab mm':>11} {'tunelab blas':>13}"
        f" {'ratio mm':>9} {'ratio blas':>11} {'%peak blas':>11} {'%peak torch':>12}"
    )
    print(header)
    rows = []
    for c in (256, 512):
        for method in ("full", "lora_r8_qv"):
            default = time_step(c, method, False)
            flushed = time_step(c, method, True)
            best = min(default, flushed)
            tl = {b: criterion_ms(f"train_step_d{c}_{b}", method) for b in ("matrixmultiply", "blas")}
            ratio = {b: (None if v is None else v / best) for b, v in tl.items()}
            flops = model_flops(c)
            pct = lambda ms: None if ms is None else 100 * flops / (ms / 1e3) / 1e9 / peak  # noqa: E731
            row = dict(
                case=f"d{c}_{method}", torch_ms=default, torch_flushed_ms=flushed,
                tunelab_matrixmultiply_ms=tl["matrixmultiply"], tunelab_blas_ms=tl["blas"],
                ratio_matrixmultiply=ratio["matrixmultiply"], ratio_blas=ratio["blas"],
                model_gflop=flops / 1e9, pct_peak_blas=pct(tl["blas"]), pct_peak_torch=pct(best),
            )
            rows.append(row)
            print(
                f"{row['case']:<18} {default:>9.1f} {flushed:>9.1f} {fmt(tl['matrixmultiply']):>11}"
                f" {fmt(tl['blas']):>13} {fmt(ratio['matrixmultiply'], '.2f'):>9}"
                f" {fmt(ratio['blas'], '.2f'):>11} {fmt(row['pct_peak_blas'], '.0f'):>11}"
                f" {fmt(row['pct_peak_torch'], '.0f'):>12}"
            )
    out["rows"] = rows
    out["load_after"] = load()
    print(f"\nload average (1 min): {out['load_before']:.2f} before, {out['load_after']:.2f} after")
    print("ratio = tunelab ms / the faster PyTorch mode (below 1: tunelab is faster)")
    if ARGS.json:
        ARGS.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    sys.exit(main())
