#!/usr/bin/env bash
# Evaluate a checkpoint on the fixed CI subset and gate it against the stored baseline.
#   examples/ci/run_gate.sh CHECKPOINT [OUTDIR]
# Exit code: 0 pass, 1 regression, 2 error. Writes OUTDIR/gate.md (PR comment) and OUTDIR/gate.xml (JUnit).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ckpt="${1:?usage: run_gate.sh CHECKPOINT [OUTDIR]}"
out="${2:-ci-out}"
MMGPT_EVAL=${MMGPT_EVAL:-mmgpt-eval}
"$MMGPT_EVAL" run --config "$here/ci.toml" --ckpt "$ckpt" --output-dir "$out"
set +e
"$MMGPT_EVAL" gate --baseline "$here/baseline" --candidate "$out" --policy "$here/gate.toml" \
    --markdown "$out/gate.md" --junit "$out/gate.xml" --json "$out/gate.json"
rc=$?
set -e
"$MMGPT_EVAL" report "$out" --baseline "$here/baseline" --gate "$out/gate.json" -o "$out/report.html" || true
exit $rc
