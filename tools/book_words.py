#!/usr/bin/env python3
"""Prose words per chapter of the book, and the total.

    tools/book_words.py             the English book (book/src), chapters in SUMMARY.md order
    tools/book_words.py book/vi/src another book's source directory

Counted: whitespace-separated tokens that contain a letter, in the chapter's markdown outside
fenced code blocks, outside `{{#include ...}}` lines (code and generated program output), and
outside formulas (\\[ ... \\], \\( ... \\), $$ ... $$). Inline code spans count: they are part of
a sentence. Standard library only.
"""
import re
import sys
from pathlib import Path

FORMULA = re.compile(r"\\\\\[.*?\\\\\]|\\\\\(.*?\\\\\)|\$\$.*?\$\$", re.S)


def prose(markdown: str) -> str:
    out, fence = [], None
    for line in markdown.splitlines():
        stripped = line.lstrip()
        marker = re.match(r"(`{3,}|~{3,})", stripped)
        if marker:
            if fence is None:
                fence = marker.group(1)[0]
            elif stripped.startswith(fence * 3):
                fence = None
            continue
        if fence is None and "{{#include" not in line and "{{#rustdoc_include" not in line:
            out.append(line)
    return FORMULA.sub(" ", "\n".join(out))


def words(text: str) -> int:
    return sum(1 for token in text.split() if re.search(r"[^\W\d_]", token))


def main() -> None:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "book/src")
    summary = (src / "SUMMARY.md").read_text(encoding="utf-8")
    chapters = [c for c in re.findall(r"\]\(([^)]+\.md)\)", summary)]
    total = 0
    width = max(len(c) for c in chapters)
    for chapter in chapters:
        path = src / chapter
        n = words(prose(path.read_text(encoding="utf-8"))) if path.exists() else 0
        total += n
        print(f"{chapter:<{width}}  {n:>6}")
    print(f"{'total (' + str(len(chapters)) + ' chapters)':<{width}}  {total:>6}")


if __name__ == "__main__":
    main()
