#!/usr/bin/env bash
# Runs every configuration of issue 24's "no result changes" check with one venv's mmgpt-eval.
#
#   EQUIV_DATA=DATA bash benchmarks/equivalence/run_configs.sh VENV_BIN OUT   e.g. .venv/bin /tmp/equiv/new
#
# Inputs come from $EQUIV_DATA (written once by make_data.py with the reference commit's code;
# overrides). Everything is written under OUT (emptied first); the checkout is only read (its git status
# is compared before and after). One torch thread per process; JOBS (default 2) configurations run at a
# time; each configuration's log is OUT/logs/<name>.log, its wall time a line of OUT/timings.tsv.
# Exit status: 0 when every configuration ran, else 1 (a failed one is reported; the others still run).
#
# Optional: ONLY="default series of-0shot" runs the configurations whose names start with these words;
# REPRODUCE_MODULE=pkg.reproduce names the module of `make reproduce` (default: mmgpt_eval.reproduce if
# importable, else the `-m MODULE` of the checkout's Makefile `reproduce:` target, else the one
# reproduce.py inside a package of the checkout).
set -uo pipefail

BIN=$(cd "${1:?usage: run_configs.sh VENV_BIN OUT}" && pwd)
OUT=${2:?usage: run_configs.sh VENV_BIN OUT}
DATA=${EQUIV_DATA:?set EQUIV_DATA to the folder make_data.py wrote}
PY=$BIN/python
MM=$BIN/mmgpt-eval
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 PYTHONHASHSEED=0

[ -x "$MM" ] || { echo "no mmgpt-eval in $BIN" >&2; exit 2; }
[ -f "$DATA/of/flags.json" ] || { echo "no fixture data in $DATA (run make_data.py with the 0ef36bc venv)" >&2; exit 2; }
rm -rf "$OUT"; mkdir -p "$OUT/logs"; OUT=$(cd "$OUT" && pwd)
cd "$OUT"   # never the checkout: `python -m` must import the venv's installed package

ROOT=$("$PY" -c 'import mmgpt_eval, pathlib; print(pathlib.Path(mmgpt_eval.__file__).resolve().parents[1])')
echo "mmgpt_eval from: $ROOT ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))" | tee "$OUT/source.txt"
git -C "$ROOT" status --porcelain > "$OUT/logs/git-status-before.txt" 2>/dev/null
printf 'config\tseconds\tstatus\n' > "$OUT/timings.tsv"
T0=$SECONDS

want() {  # is configuration $1 selected? (ONLY: words, each a name or a name's prefix)
  [ -z "${ONLY:-}" ] && return 0
  local w; for w in $ONLY; do [[ $1 == "$w"* ]] && return 0; done; return 1
}

# run NAME CMD... : one configuration, timed, logged; up to $JOBS at a time in the background
JOBS=${JOBS:-2}
run() {
  local name=$1; shift
  want "$name" || return 0
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  echo "== $name"
  (
    t0=$SECONDS
    { echo "+ $*"; "$@"; } > "$OUT/logs/$name.log" 2>&1; rc=$?
    printf '%s\t%s\t%s\n' "$name" "$((SECONDS - t0))" "$rc" >> "$OUT/timings.tsv"
    if [ $rc -ne 0 ]; then echo "   $name FAILED (rc $rc): tail of $OUT/logs/$name.log"; tail -5 "$OUT/logs/$name.log"; fi
  ) &
}

flags() {  # the official-format fixture flags of the given tasks
  "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(" ".join(x for t in sys.argv[2:] for x in d["flags"][t]))' \
    "$DATA/of/flags.json" "$@"
}

COMMON=(--no-progress)
EMB=(--model tiny-openflamingo --ckpt tiny-mmgpt)

# 1. the embedded default (what `make demo` runs), with its baseline, 60 samples per task
run default "$MM" run --output-dir "$OUT/default" --baseline tiny-openflamingo --limit 60 "${COMMON[@]}"

# 2. checkpoint series: a glob of trainer .pt checkpoints on the tiny preset, and a folder of PEFT adapter folders
run series-pt "$MM" -q run --model tiny --ckpt "$DATA/ckpts/checkpoint_*.pt" --tasks easyvqa,counting --limit 24 \
  --max-new-tokens 4 --no-report "${COMMON[@]}" --output-dir "$OUT/series-pt"
run series-peft "$MM" -q run --model tiny-openflamingo --ckpt "$DATA/peft-series" --tasks easyvqa,counting,dialog \
  --limit 16 --no-report "${COMMON[@]}" --output-dir "$OUT/series-peft"

# 3. torchrun, world size 2 (gloo on CPU): the embedded model on three tasks; the OpenFlamingo protocol at 4 shots
TR=("$PY" -m torch.distributed.run --standalone --nproc_per_node 2 -m mmgpt_eval)
run torchrun-ws2 "${TR[@]}" -q run "${EMB[@]}" --tasks easyvqa,counting,dialog --limit 20 --batch-size 3 \
  --dialog-max-new-tokens 12 --no-report "${COMMON[@]}" --output-dir "$OUT/torchrun-ws2"
# shellcheck disable=SC2046
run torchrun-ws2-of "${TR[@]}" -q run "${EMB[@]}" --tasks vqav2,hatefulmemes $(flags vqav2 hatefulmemes) \
  --protocol openflamingo --num-fewshot 4 --of-query-set-size 24 --of-num-samples 10 --batch-size 3 --no-report \
  "${COMMON[@]}" --output-dir "$OUT/torchrun-ws2-of"

# 4. make reproduce --skip-training's evaluation stage, on the trained stages as shipped (linked into OUT,
#    since the stage reads them from its --output-dir). --smoke: the same stage with 12 samples per task
#    and 8-token dialogue answers, and nothing written outside --output-dir.
REPRO=${REPRODUCE_MODULE:-}
if [ -z "$REPRO" ]; then
  if "$PY" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("mmgpt_eval.reproduce") is None)' 2>/dev/null; then
    REPRO=mmgpt_eval.reproduce
  else
    REPRO=$(awk '/^reproduce:/{f=1; next} f && /^[^\t]/{f=0} f' "$ROOT/Makefile" 2>/dev/null \
            | grep -o -- '-m [A-Za-z0-9_.]*' | head -1 | cut -c4-)
  fi
  if [ -z "$REPRO" ]; then
    f=$(cd "$ROOT" && find . -name reproduce.py -not -path './.venv/*' -not -path './tests/*' -not -path './.git/*' | head -1)
    [ -n "$f" ] && REPRO=$(echo "${f#./}" | sed 's/\.py$//; s#/#.#g')
  fi
fi
echo "reproduce module: ${REPRO:-NOT FOUND}" | tee -a "$OUT/source.txt"
if want reproduce; then
  # symbolic links: the model spec's paths resolve to $DATA on both sides (they enter the fingerprints)
  mkdir -p "$OUT/reproduce"
  for d in "$DATA"/reproduce-models/*; do ln -s "$d" "$OUT/reproduce/$(basename "$d")"; done
  # from the checkout: `python -m` of a module outside the installed packages (e.g. a scripts folder) resolves there
  pushd "$ROOT" > /dev/null; run reproduce "$PY" -m "$REPRO" --skip-training --smoke --output-dir "$OUT/reproduce"; popd > /dev/null
fi
# the runs of that stage at 24 samples and full-length dialogue answers: the tiny MultiModal-GPT on the trained
# base (model.toml), with the base itself as the in-process baseline (paired comparisons)
M=$DATA/reproduce-models
run reproduce24 "$MM" -q run --tasks easyvqa,counting,dialog --template mmgpt --no-progress --batch-size 64 --limit 24 \
  --model "$M/tiny-base/final/model.toml" --ckpt "$M/tiny-mmgpt/final" --baseline "$M/tiny-base/final/model.toml" \
  --label tiny-mmgpt --output-dir "$OUT/reproduce24"

# 5. --protocol openflamingo at 0 and 4 shots, random demos and RICES: VQAv2, COCO, Hateful Memes (10 of 12
#    test items, OpenFlamingo's seeded subset; query set = the 24 train items); ImageNet (4 images, all
#    1,000 class names ranked) at 4 shots with RICES
for shots in 0 4; do
  for sel in random rices; do
    # shellcheck disable=SC2046
    run "of-${shots}shot-${sel}" "$MM" -q run "${EMB[@]}" --tasks vqav2,coco,hatefulmemes \
      $(flags vqav2 coco hatefulmemes) --protocol openflamingo --num-fewshot "$shots" --fewshot-selection "$sel" \
      --of-query-set-size 24 --of-num-samples 10 --batch-size 3 --no-report "${COMMON[@]}" \
      --output-dir "$OUT/of-${shots}shot-${sel}"
  done
done
# shellcheck disable=SC2046
run of-imagenet-4shot-rices "$MM" -q run "${EMB[@]}" --tasks imagenet $(flags imagenet) --protocol openflamingo \
  --num-fewshot 4 --fewshot-selection rices --of-query-set-size 16 --batch-size 3 --no-report "${COMMON[@]}" \
  --output-dir "$OUT/of-imagenet-4shot-rices"

wait
git -C "$ROOT" status --porcelain > "$OUT/logs/git-status-after.txt" 2>/dev/null
if ! cmp -s "$OUT/logs/git-status-before.txt" "$OUT/logs/git-status-after.txt"; then
  echo "WARNING: the checkout's git status changed during the runs:"; diff "$OUT/logs/git-status-before.txt" "$OUT/logs/git-status-after.txt"
fi
column -t "$OUT/timings.tsv"
echo "wall: $((SECONDS - T0)) s (sum of configurations: $(awk 'NR>1{s+=$2} END{print s}' "$OUT/timings.tsv") s, $JOBS at a time)"
FAILED=$(awk -F'\t' 'NR>1 && $3 != 0 {printf "%s ", $1}' "$OUT/timings.tsv")
if [ -n "$FAILED" ]; then echo "FAILED configurations: $FAILED"; exit 1; fi
echo "all configurations ran; now: python benchmarks/equivalence/compare.py BASE $OUT"
