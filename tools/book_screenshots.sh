#!/usr/bin/env bash
# Builds the book and takes headless Chromium screenshots of a few pages, to look at it as a
# reader does: the start page, the formula-heavy chapters (losses, preference tuning), a method
# page, the comparison chapter, a walk-through, and the Vietnamese edition's losses and interview
# chapters (built into book/build/vi). The PNGs go to target/book-screenshots/ (not committed).
#
#   tools/book_screenshots.sh              build, then screenshot
#   tools/book_screenshots.sh --no-build   screenshot book/build as it is
#
# Needs mdbook (cargo install mdbook --version 0.5.4) and Chromium (apt-get install chromium).
# Also checks the built sidebar for doubled chapter numbers ("3. 3.") and exits non-zero if it
# finds any (that every formula converts is checked by `cargo test`, tests/suite/book.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/book-screenshots
mkdir -p "$out"
if [ "${1:-}" != --no-build ]; then
    mdbook build book
    mdbook build book/vi
fi
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
    echo "no Chromium found: apt-get install -y chromium" >&2
    exit 1
fi
pages=(
    "index.html start"
    "notes/03-1-losses.html losses"
    "beyond/preference.html preference"
    "methods/lora.html method-lora"
    "notes/07-comparison.html comparison"
    "engine/backward.html backward"
    "walkthrough/instruction.html walkthrough-instruction"
    "vi/notes/03-1-losses.html vi-losses"
    "vi/notes/09-interview-systems.html vi-interview-systems"
)
for entry in "${pages[@]}"; do
    read -r page name <<<"$entry"
    file="$PWD/book/build/$page"
    if [ ! -f "$file" ]; then
        echo "missing page $page" >&2
        exit 1
    fi
    # A throwaway profile: no state shared with another Chromium on the machine.
    profile=$(mktemp -d)
    "$browser" --headless --disable-gpu --no-sandbox --hide-scrollbars \
        --user-data-dir="$profile" --window-size=1280,2000 \
        --screenshot="$out/$name.png" "file://$file" >/dev/null 2>&1
    rm -rf "$profile"
    echo "$out/$name.png  ($page)"
done

status=0
# The sidebar: mdbook's section labels on top of the titles' own numbers would read "3. 3. ...".
if grep -o '\.html">[^<]*<' book/build/toc-*.js | sed 's/.*">//' | grep -E '^[0-9]+(\.[0-9]+)*\. [0-9]'; then
    echo "doubled chapter numbers in the sidebar (above)" >&2
    status=1
fi
exit $status
