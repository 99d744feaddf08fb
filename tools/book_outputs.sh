#!/usr/bin/env bash
# Regenerates the program output the book shows: book/src/generated/*.txt.
#
# Every file is what the release binary printed in this run; nothing is typed by hand. A command
# that this build does not have yet is listed and skipped, and its file says so, so the book
# still builds; re-run this script once the command exists. Takes several minutes (compare
# trains every method twice: on the full data and in the low-data setting).
#
#   tools/book_outputs.sh            everything
#   tools/book_outputs.sh quick      skip the slow ones (compare, the full align compare)
#   tools/book_outputs.sh align      only the `tunelab align` outputs (its quick compare included)
#   tools/book_outputs.sh interview        every interview answer `tunelab interview` lists
#   tools/book_outputs.sh interview N...   only these interview answers
#   tools/book_outputs.sh pitfall NAME...  only these pitfalls
#   tools/book_outputs.sh qlora      only the QLoRA page's outputs (interview 16, two finetunes)
#   tools/book_outputs.sh sweeps     only the method pages' sweeps (text, JSON and SVG chart each)
#                                    and compare's charts
#   tools/book_outputs.sh walkthrough  only the two walk-throughs' outputs
#   tools/book_outputs.sh vi         only the Vietnamese answers (seconds: nothing is trained)
#
# The Vietnamese book (book/vi) includes the same files, plus interview-N.vi.txt: the question
# and answer of `tunelab interview N --lang vi --answer-only`, so that the Vietnamese answers are
# written once, in src/lab/interview/, and never copied by hand into the book.
set -uo pipefail
cd "$(dirname "$0")/.."
out=book/src/generated
mkdir -p "$out"
cargo build --release --quiet || exit 1
bin=target/release/tunelab
skipped=()

has() { "$bin" "$1" --help >/dev/null 2>&1; }

# run FILE COMMAND...: runs `tunelab COMMAND...` into $out/FILE, or notes that it is missing.
run() {
    local file=$1
    shift
    if ! has "$1"; then
        skipped+=("tunelab $*")
        printf '(not generated: `tunelab %s` is not in this build yet; re-run tools/book_outputs.sh)\n' "$*" >"$out/$file"
        echo "skip  tunelab $*"
        return
    fi
    echo "run   tunelab $*"
    # stdout only (progress bars go to stderr); stderr too if the command fails.
    local err started
    err=$(mktemp)
    started=$SECONDS
    { printf '$ tunelab %s\n' "$*"; "$bin" "$@" 2>"$err" || cat "$err"; } >"$out/$file"
    rm -f "$err"
    echo "      $((SECONDS - started)) s"
}

# The stage after supervised fine-tuning (the book's "Beyond supervised fine-tuning" part). Each
# run is small enough for a minute or two on 2 cores; training runs write their checkpoints under
# target/book-runs, not into the book.
align_outputs() {
    local runs=target/book-runs
    run align-preference-help.txt align preference --help
    run align-dpo.txt align preference --loss-type sigmoid --max-steps 20 --batch-size 8 \
        --train-pairs 400 --eval-pairs 100 --output-dir "$runs/align-dpo" --overwrite-output-dir
    run align-simpo.txt align preference --loss-type simpo --max-steps 20 --batch-size 8 \
        --train-pairs 400 --eval-pairs 100 --output-dir "$runs/align-simpo" --overwrite-output-dir
    run align-reward.txt align reward --max-steps 120 --batch-size 8 --eval-pairs 200 \
        --output-dir "$runs/align-reward" --overwrite-output-dir
    run align-grpo.txt align grpo --warmup-sft-steps 150 --max-steps 16 --batch-size 4 --prompts 16 \
        --max-eval-examples 50 --output-dir "$runs/align-grpo" --overwrite-output-dir
    run align-compare-quick.txt align compare --quick --json-out "$out/align-compare-quick.json"
    if [ -f "$out/align-compare-quick.json" ]; then
        { echo '$ tunelab align compare --quick --json'; cat "$out/align-compare-quick.json"; } \
            >"$out/align-compare-json.txt"
        rm "$out/align-compare-quick.json"
    fi
}

# The QLoRA page (methods/qlora.md): LoRA on the base stored in NF4 with double quantisation,
# and the same run on the f32 base, each well under a minute. The page also shows interview 16
# (it measures the stored bases and trains both on three seeds).
qlora_finetunes() {
    local runs=target/book-runs
    run finetune-qlora.txt finetune --method lora --base-dtype nf4 --double-quant --max-steps 40 \
        --lr 3e-3 --output-dir "$runs/qlora" --overwrite-output-dir
    run finetune-lora-f32.txt finetune --method lora --max-steps 40 --lr 3e-3 \
        --output-dir "$runs/lora-f32" --overwrite-output-dir
}

# run_vi N: interview N's Vietnamese question and answer into $out/interview-N.vi.txt. The
# Vietnamese book includes it as markdown: no `$ tunelab` line, and the question's line
# ("7. ...") becomes the section's heading ("## Câu 7. ..."); runs nothing.
run_vi() {
    local file="$out/interview-$1.vi.txt"
    echo "run   tunelab interview $1 --lang vi --answer-only"
    if ! "$bin" interview "$1" --lang vi --answer-only >"$file.tmp" 2>&1; then
        skipped+=("tunelab interview $1 --lang vi --answer-only")
        cat "$file.tmp" >&2
        printf '(not generated: `tunelab interview %s --lang vi --answer-only` failed in this build; re-run tools/book_outputs.sh vi)\n' "$1" >"$file"
        rm -f "$file.tmp"
        return
    fi
    { printf '## Câu '; cat "$file.tmp"; } >"$file"
    rm -f "$file.tmp"
}

# Every question `tunelab interview` lists, in Vietnamese.
vi_answers() {
    for n in $("$bin" interview | sed -n 's/^ *\([0-9][0-9]*\)\. .*/\1/p'); do
        run_vi "$n"
    done
}

# The method pages' own measurements: one `tunelab sweep` per option that matters (rank, rsLoRA,
# target modules, bottleneck, number of virtual tokens), on sentiment's validation split, three
# seeds, compare's budget and each method's compare learning rate; each writes its table
# (sweep-NAME.txt), its points (sweep-NAME.json) and its chart (sweep-NAME.svg). Each sweep is
# 15 runs or fewer, a few minutes on 2 cores.
method_sweeps() {
    local runs=target/book-runs
    sweep() {
        local name=$1
        shift
        run "sweep-$name.txt" sweep --task sentiment --seeds 3 --out-dir "$runs/sweep-$name" \
            --json-out "$out/sweep-$name.json" --plot "$out/sweep-$name.svg" "$@"
    }
    sweep lora-r --method lora --lr 9e-3 --r 2,4,8,16,32 --alpha 16
    sweep lora-r-rslora --method lora --lr 9e-3 --r 2,4,8,16,32 --alpha 16 --rslora
    sweep lora-targets --method lora --lr 9e-3 --r 8 --alpha 16 --targets 'q,v;q,k,v,o;fc,proj;all'
    sweep houlsby-bottleneck --method houlsby --lr 1e-2 --bottleneck 2,4,8,16,64
    sweep prefix-length --method prefix --no-reparam --lr 3e-2 --n-virtual 1,5,10,20,40
    sweep prompt-length --method prompt --prompt-init-text "the review is good or bad" --lr 3e-2 \
        --n-virtual 1,5,10,20,40
}

# compare's charts (training loss per step, test score against trainable parameters) for the
# comparison chapter, from the quick run: compare-quick/loss_curves.svg, score_vs_params.svg.
compare_charts() {
    run compare-quick-plot.txt compare --quick --plot "$out/compare-quick"
}

# The two walk-throughs (book/src/walkthrough/): the data and its encodings, then a sentiment
# fine-tune three ways (full, the head only, LoRA) with validation during training and
# test before and after, then instruction tuning on the dialogue task with LoRA and the text the
# base and the tuned model generate for the same prompts. Every run is a few minutes or less.
walkthrough_outputs() {
    local runs=target/book-runs
    run_example walkthrough
    # Classification: the base with its new, untrained head, then three fine-tunes.
    run wt-sentiment-before.txt eval --task sentiment
    run wt-sentiment-full.txt finetune --task sentiment --method full --lr 1.5e-3 --max-steps 50 \
        --warmup-steps 5 --eval-strategy steps --eval-steps 10 --max-eval-examples 150 \
        --output-dir "$runs/wt-full" --overwrite-output-dir
    run wt-sentiment-head.txt finetune --task sentiment --method full --last-k 0 --lr 1e-2 \
        --max-steps 50 --warmup-steps 5 --eval-strategy steps --eval-steps 10 \
        --max-eval-examples 150 --output-dir "$runs/wt-head" --overwrite-output-dir
    run wt-sentiment-lora.txt finetune --task sentiment --method lora --lr 9e-3 --max-steps 50 \
        --warmup-steps 5 --eval-strategy steps --eval-steps 10 --max-eval-examples 150 \
        --output-dir "$runs/wt-lora" --overwrite-output-dir
    # Each run's log: a line every 10 steps with the training loss and that step's validation.
    local r
    for r in full head lora; do
        echo "\$ cat $runs/wt-$r/log.jsonl"
        cat "$runs/wt-$r/log.jsonl"
    done >"$out/wt-sentiment-logs.txt" 2>&1
    run wt-sentiment-after.txt eval --task sentiment --adapter "$runs/wt-lora/adapter"
    # Instruction tuning: the base, LoRA on the dialogue task, the tuned model.
    run wt-dialogue-before.txt eval --task dialogue --max-eval-examples 50
    run wt-dialogue-lora.txt finetune --task dialogue --method lora --targets all --r 16 \
        --alpha 32 --lr 3e-3 --max-steps 200 --batch-size 16 --warmup-steps 20 \
        --max-eval-examples 50 --output-dir "$runs/wt-dialogue" --overwrite-output-dir
    # The first three test conversations' prompts (line breaks written \n), before and after.
    local i=0 line prompt
    while IFS= read -r line; do
        i=$((i + 1))
        prompt=$(printf '%b' "$line")
        run "wt-generate-$i-before.txt" generate --prompt "$prompt" --max-new-tokens 24
        run "wt-generate-$i-after.txt" generate --prompt "$prompt" --max-new-tokens 24 \
            --adapter "$runs/wt-dialogue/adapter"
    done < <(cargo run --release --quiet --example walkthrough -- prompts)
}

run_example() {
    echo "run   cargo run --release --example $1"
    { printf "$ cargo run --release --example %s\n" "$1"; cargo run --release --quiet --example "$1" 2>&1; } >"$out/example-$1.txt"
}

summary() {
    if [ ${#skipped[@]} -gt 0 ]; then
        echo
        echo "Not available in this build (placeholders written):"
        printf '  %s\n' "${skipped[@]}"
    fi
}

if [ "${1:-}" = align ]; then
    align_outputs
    summary
    exit 0
fi
if [ "${1:-}" = vi ]; then
    vi_answers
    summary
    exit 0
fi
if [ "${1:-}" = qlora ]; then
    qlora_finetunes
    run interview-16.txt interview 16
    summary
    exit 0
fi
# The question numbers `tunelab interview` lists ("  7. What do ..."), so a new question is
# generated without editing this script.
interview_numbers() { "$bin" interview | sed -n 's/^ *\([0-9][0-9]*\)\. .*/\1/p'; }

if [ "${1:-}" = walkthrough ]; then
    walkthrough_outputs
    summary
    exit 0
fi
if [ "${1:-}" = sweeps ]; then
    method_sweeps
    compare_charts
    summary
    exit 0
fi
if [ "${1:-}" = interview ] || [ "${1:-}" = pitfall ]; then
    kind=$1
    shift
    items=("$@")
    if [ "$kind" = interview ] && [ $# -eq 0 ]; then
        mapfile -t items < <(interview_numbers)
    fi
    for x in "${items[@]}"; do
        run "$kind-$x.txt" "$kind" "$x"
        if [ "$kind" = interview ]; then
            run_vi "$x"
        fi
    done
    summary
    exit 0
fi

run help.txt --help
run gradcheck.txt gradcheck
run gradcheck-attention.txt gradcheck --op attention
run estimate-7b.txt estimate 7B
run estimate-175b.txt estimate 175B --r 4
run exercises-hint-softmax.txt exercises hint softmax --all
run_example lora_lm_step
qlora_finetunes
# Every question `tunelab interview` lists.
for n in $(interview_numbers); do
    run "interview-$n.txt" interview "$n"
done
vi_answers
# Every pitfall `tunelab pitfall` lists.
for p in $("$bin" pitfall | sed -n 's/^  \([a-z][a-z0-9-]*\) .*/\1/p'); do
    run "pitfall-$p.txt" pitfall "$p"
done
align_outputs
if [ "${1:-}" != quick ]; then
    if "$bin" compare --help 2>/dev/null | grep -q -- '--quick'; then
        run compare-quick.txt compare --quick --json-out "$out/compare-quick.json"
        if [ -f "$out/compare-quick.json" ]; then
            { echo '$ tunelab compare --quick --json'; cat "$out/compare-quick.json"; } >"$out/compare-json.txt"
            rm "$out/compare-quick.json"
        fi
    else
        skipped+=("tunelab compare --quick")
        printf '(not generated: `tunelab compare --quick` is not in this build yet; re-run tools/book_outputs.sh)\n' >"$out/compare-quick.txt"
    fi
    run compare.txt compare
    run align-compare.txt align compare
    method_sweeps
    compare_charts
    walkthrough_outputs
fi

summary
