#!/usr/bin/env python3
"""Checks a `tunelab compare --report DIR` page (run by hand): that it is self-contained (no
script, no stylesheet or image fetched, every chart inline), then renders it in headless
Chromium and saves a PNG screenshot, so a person (or the book) can look at it.

    tools/report_check.py DIR [OUT.png] [--width 1280] [--height 2300]

DIR is the directory given to --report (or the compare.html file itself); OUT defaults to
DIR/compare.png. Chromium comes from `apt-get install -y chromium`; the script looks for
`chromium`, `chromium-browser`, `google-chrome` on PATH (or $CHROMIUM).
"""
import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile


def fail(msg):
    raise SystemExit(f"report_check: {msg}")


def check_html(path):
    with open(path, encoding="utf-8") as f:
        html = f.read()
    if not html.startswith("<!DOCTYPE html>"):
        fail(f"{path} does not start with <!DOCTYPE html>")
    if "<script" in html.lower():
        fail(f"{path} holds a script; the report must need no JavaScript")
    # Nothing fetched: every address in the page is the SVG namespace.
    addresses = re.findall(r"(?:https?:)?//[\w.-]+[^\s\"'<>)]*", html)
    others = [a for a in addresses if a != "http://www.w3.org/2000/svg"]
    if others:
        fail(f"{path} refers to {others[:3]}: the report must be self-contained")
    if re.search(r"<(link|img|iframe|object)\b", html, re.I):
        fail(f"{path} loads an external resource")
    charts = html.count("<svg")
    if charts < 4:
        fail(f"{path} holds {charts} inline SVG charts; expected the score, memory, loss and forgetting charts")
    rows = html.count("<tr>") - 1
    return charts, rows


def chromium():
    for name in [os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"]:
        if name and shutil.which(name):
            return shutil.which(name)
    fail("no Chromium on PATH: apt-get install -y chromium (or set $CHROMIUM)")


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        fail(f"{path} is not a PNG")
    return struct.unpack(">II", head[16:24])


def ink(path):
    """The fraction of pixels that are not near-white, if Pillow is installed (else None)."""
    try:
        from PIL import Image
    except ImportError:
        return None
    img = Image.open(path).convert("L")
    hist = img.histogram()
    return 1.0 - sum(hist[240:]) / max(1, sum(hist))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", help="the --report directory, or its compare.html")
    ap.add_argument("out", nargs="?", help="where the PNG goes (default: next to the page)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=2300)
    a = ap.parse_args()
    page = a.report if a.report.endswith(".html") else os.path.join(a.report, "compare.html")
    if not os.path.isfile(page):
        fail(f"no report at {page} (run tunelab compare --report DIR first)")
    charts, rows = check_html(page)
    out = a.out or os.path.splitext(page)[0] + ".png"
    out = os.path.abspath(out)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", f"--user-data-dir={profile}",
            f"--window-size={a.width},{a.height}", f"--screenshot={out}",
            "file://" + os.path.abspath(page),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or not os.path.isfile(out):
        fail(f"chromium failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    w, h = png_size(out)
    covered = ink(out)
    if covered is not None and covered < 0.01:
        fail(f"{out} is blank ({covered:.2%} of the pixels are not white)")
    kb = os.path.getsize(out) / 1024
    extra = "" if covered is None else f", {covered:.1%} of the pixels drawn"
    print(f"{page}: {rows} table rows, {charts} inline SVG charts, self-contained")
    print(f"wrote {out}: {w}x{h} PNG, {kb:.0f} KB{extra}")


if __name__ == "__main__":
    sys.exit(main())
