#!/usr/bin/env bash
# Evaluate a checkpoint on your fixed CI subset and gate it against your stored baseline.
# Copy to ci/run_gate.sh in your training repository; run from the repository root:
#   ci/run_gate.sh CHECKPOINT [OUTDIR]
# Needs mmgpt-eval and open-flamingo installed (README, "Gate checkpoints in your training repository";
# without open-flamingo `run` stops with one line naming the command that installs it, exit 2).
# It uses only files `mmgpt-eval gate init` wrote into your repository (override with env vars):
#   MMGPT_CONFIG   ci/mmgpt-eval.toml   the fixed subset (a run config)
#   MMGPT_BASELINE ci/mmgpt-baseline    the stored baseline run
#   MMGPT_POLICY   ci/gate.toml         the gate policy
# Exit code: 0 pass, 1 regression, 2 error. Writes OUTDIR/gate.md (PR comment), OUTDIR/gate.xml
# (JUnit), OUTDIR/gate.json and OUTDIR/report.html.
set -euo pipefail
ckpt="${1:?usage: run_gate.sh CHECKPOINT [OUTDIR]}"
out="${2:-ci-out}"
config="${MMGPT_CONFIG:-ci/mmgpt-eval.toml}"
baseline="${MMGPT_BASELINE:-ci/mmgpt-baseline}"
policy="${MMGPT_POLICY:-ci/gate.toml}"
MMGPT_EVAL=${MMGPT_EVAL:-mmgpt-eval}
"$MMGPT_EVAL" run --config "$config" --ckpt "$ckpt" --output-dir "$out" --overwrite --no-report
set +e
"$MMGPT_EVAL" gate --baseline "$baseline" --candidate "$out" --policy "$policy" \
    --markdown "$out/gate.md" --junit "$out/gate.xml" --json "$out/gate.json"
rc=$?
set -e
"$MMGPT_EVAL" report "$out" --baseline "$baseline" --gate "$out/gate.json" -o "$out/report.html" || true
exit $rc
