#!/usr/bin/env python3
"""Regenerates the `compare` output shown in README.md (run by hand): runs the README's first
command, `cargo run --release -- compare`, and replaces the block between the compare markers
with what it printed, so the README never shows a typed table. With a FILE argument, uses the
output of a run already made (for instance book/src/generated/compare.txt)."""
import os
import re
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BEGIN, END = "<!-- compare output: begin -->", "<!-- compare output: end -->"

if len(sys.argv) > 1:
    # The output of a run already made (tools/book_outputs.sh writes book/src/generated/compare.txt).
    with open(sys.argv[1]) as f:
        out = "".join(l for l in f if not l.startswith("$ "))
else:
    out = subprocess.run(
        ["cargo", "run", "--release", "--quiet", "--", "compare"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
path = os.path.join(ROOT, "README.md")
with open(path) as f:
    readme = f.read()
if BEGIN not in readme or END not in readme:
    raise SystemExit(f"README.md lacks the markers {BEGIN} ... {END}")
block = f"{BEGIN}\n```text\n$ cargo run --release -- compare\n{out.rstrip()}\n```\n{END}"
readme = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, readme, flags=re.S)
with open(path, "w") as f:
    f.write(readme)
print(out)
