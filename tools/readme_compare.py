#!/usr/bin/env python3
"""Regenerates the `compare` output shown in README.md (run by hand): runs the README's first
command, `cargo run --release -- compare`, and replaces the block between the compare markers
with what it printed (the table with its intervals, the notes on how each column was measured,
the paired comparison and the total wall time), so the README never shows a typed table.

    tools/readme_compare.py                  run the default compare
    tools/readme_compare.py -- --seeds 5     run compare with these options (shown in the block)
    tools/readme_compare.py FILE             use the output of a run already made (for instance
                                             book/src/generated/compare.txt)
"""
import os
import re
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BEGIN, END = "<!-- compare output: begin -->", "<!-- compare output: end -->"

args = sys.argv[1:]
if args and args[0] != "--":
    # The output of a run already made (tools/book_outputs.sh writes book/src/generated/compare.txt),
    # with the command it shows on its `$ ` line.
    with open(args[0]) as f:
        lines = f.readlines()
    shown = next((l[2:].strip() for l in lines if l.startswith("$ ")), "tunelab compare")
    command = "cargo run --release -- " + shown.split(None, 1)[1] if shown.startswith("tunelab ") else shown
    out = "".join(l for l in lines if not l.startswith("$ "))
else:
    extra = args[1:]
    command = " ".join(["cargo run --release -- compare"] + extra)
    out = subprocess.run(
        ["cargo", "run", "--release", "--quiet", "--", "compare"] + extra,
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
# A table from a binary older than the intervals would silently replace the README's.
for needed in ["95% interval", "step ms:", "total wall time"]:
    if needed not in out:
        raise SystemExit(f"the compare output lacks {needed!r}: is the binary current?")
path = os.path.join(ROOT, "README.md")
with open(path) as f:
    readme = f.read()
if BEGIN not in readme or END not in readme:
    raise SystemExit(f"README.md lacks the markers {BEGIN} ... {END}")
block = f"{BEGIN}\n```text\n$ {command}\n{out.rstrip()}\n```\n{END}"
readme = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, readme, flags=re.S)
with open(path, "w") as f:
    f.write(readme)
print(out)
