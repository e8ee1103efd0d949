#!/usr/bin/env bash
# The GPU suite (issue 16): one command, about 8 minutes on one H200.
#
#   benchmarks/gpu_suite.sh --data DIR [--out DIR] [--device cuda|cpu] [--tiny] [--budget SECONDS]
#                           [--modes "soft marginal vae-enum"] [--train-seconds S] [--decode-seconds S]
#                           [--wheels DIR] [--iwslt DIR] [--work DIR]
#
#   --data    the raw Multi30k folder (tok/ and raw/, as /work/shared/data/multi30k) or a prepared folder
#   --out     where the figures go (default $OUT, else benchmarks/results/gpu_suite); at most 8 files:
#             gpu_suite.{json,md} (everything, the machine described), speed.{json,md}
#             (benchmarks/speed.py), speed_transformer.{json,md} (optional stage), gpu_suite.log
#   --tiny    toy sizes and budgets: with --device cpu the same stages run in about a minute on one thread
#   --wheels  wheels to install when sacremoses / subword-nmt are missing (default .gpu_wheels)
#
# Stages, each in its own process under its own time limit (and never past the overall --budget; the
# report keeps 15 s): install (wheels, pip install -e . --no-deps), speed (speed.py, paper sizes,
# every mode, naive 2018 path, largest vae-enum batch), speed no input feed (the same without input feeding:
# soft, marginal, vae-enum, vae-sample; its figures go into the report), speed graphed (the same four with
# input feeding replayed from CUDA graphs, model.cuda_graph=true; the eager loop on a CPU), prepare (Multi30k, the recipe's 10k BPE merges),
# one stage per mode (train for a fixed wall budget in bf16, evaluate on test, beam-10 decoding over the
# exact marginal), transformer speed (only when model.arch=transformer exists), report (with the machine).
# A stage that fails or runs out of time is recorded as such; the later stages still run.
set -u
export PYTHONUNBUFFERED=1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DATA="" DEVICE="cuda" TINY=0 BUDGET="" MODES="soft marginal vae-enum" TRAIN_S="" DECODE_S=""
WHEELS="$ROOT/.gpu_wheels" IWSLT="" WORK="" OUTDIR="${OUT:-}"
COMMAND_LINE="benchmarks/gpu_suite.sh$(printf ' %q' "$@")"
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA="$2"; shift 2 ;;
    --out) OUTDIR="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --tiny) TINY=1; shift ;;
    --budget) BUDGET="$2"; shift 2 ;;
    --modes) MODES="$2"; shift 2 ;;
    --train-seconds) TRAIN_S="$2"; shift 2 ;;
    --decode-seconds) DECODE_S="$2"; shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --iwslt) IWSLT="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu_suite.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$DATA" ]; then echo "gpu_suite.sh: --data DIR is required (the Multi30k folder)" >&2; exit 2; fi
OUTDIR="${OUTDIR:-$ROOT/benchmarks/results/gpu_suite}"
WORK="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_suite.XXXXXX")}"
mkdir -p "$OUTDIR" "$WORK"
: > "$WORK/stages.jsonl"
exec > >(tee -a "$OUTDIR/gpu_suite.log") 2>&1

if [ "$TINY" = 1 ]; then
  BUDGET="${BUDGET:-120}"; TRAIN_S="${TRAIN_S:-4}"; DECODE_S="${DECODE_S:-2}"
  L_INSTALL=60 L_SPEED=40 L_NO_FEED=30 L_PREPARE=40 L_MODE_EXTRA=40 L_TRANSFORMER=30
  SPEED_ARGS=(--setting tiny --steps 1 --warmup 1 --no-memory)
  NO_FEED_ARGS=(--setting tiny --steps 1 --warmup 1 --no-memory)
  MODE_ARGS=(--tiny --batch-tokens 1000 --eval-tokens 4000 --decode-chunk 10 --lr 3e-3)
  TRANSFORMER_ARGS=(--setting tiny --steps 1 --warmup 1 --no-memory)
else
  BUDGET="${BUDGET:-520}"; TRAIN_S="${TRAIN_S:-40}"; DECODE_S="${DECODE_S:-15}"
  L_INSTALL=60 L_SPEED=140 L_NO_FEED=45 L_PREPARE=60 L_MODE_EXTRA=40 L_TRANSFORMER=45
  # 16k-token batches: at 4k the H200 ran every mode at ~2% of its bf16 peak (gpu_h200_run2)
  SPEED_ARGS=(--setting paper --batch-tokens 16384 --find-max-batch 65536)
  NO_FEED_ARGS=(--setting paper --batch-tokens 16384 --steps 3 --warmup 1)
  MODE_ARGS=(--batch-tokens 8192 --eval-tokens 16384 --decode-chunk 100)
  TRANSFORMER_ARGS=(--setting paper --steps 3 --warmup 1)  # the transformer section's defaults: IWSLT sizes
fi
if [ -n "$IWSLT" ]; then SPEED_ARGS+=(--data "$IWSLT"); NO_FEED_ARGS+=(--data "$IWSLT"); fi
STARTED=$(date +%s)
PY="${PYTHON:-$(command -v python || command -v python3)}"
echo "# gpu_suite: device $DEVICE, tiny $TINY, budget ${BUDGET}s, modes: $MODES; out $OUTDIR; work $WORK"

# stage NAME LIMIT COMMAND...: run under min(LIMIT, what is left of the budget less 15 s), record the outcome
stage() {
  local name="$1" limit="$2"; shift 2
  local left=$(( BUDGET - 15 - ($(date +%s) - STARTED) ))
  [ "$left" -lt "$limit" ] && limit="$left"
  if [ "$limit" -lt 5 ]; then
    echo "## $name: skipped (budget spent)"
    printf '{"stage": "%s", "status": "skipped (budget)", "seconds": 0, "limit": %d}\n' "$name" "$limit" >> "$WORK/stages.jsonl"
    return 0
  fi
  echo "## $name (limit ${limit}s, $(( $(date +%s) - STARTED ))s into the suite)"
  local t0=$(date +%s.%N) rc status
  timeout -k 10 "$limit" "$@"
  rc=$?
  case "$rc" in
    0) status="ok" ;;
    124|137) status="timed out" ;;
    *) status="failed (exit $rc)" ;;
  esac
  local took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  echo "## $name: $status after ${took}s"
  printf '{"stage": "%s", "status": "%s", "seconds": %s, "limit": %d}\n' "$name" "$status" "$took" "$limit" >> "$WORK/stages.jsonl"
  return 0
}

install() {
  # only what is missing (a wheel never replaces an installed package): import name -> wheel name
  local wheels=() pair
  for pair in sacremoses:sacremoses subword_nmt:subword_nmt click:click joblib:joblib cloudpickle:cloudpickle \
              mock:mock regex:regex tqdm:tqdm packaging:packaging wheel:wheel; do
    if ! "$PY" -c "import ${pair%%:*}" 2>/dev/null; then
      local found=("$WHEELS/${pair#*:}"-*.whl)
      if [ -f "${found[0]}" ]; then wheels+=("${found[0]}"); else echo "no wheel for ${pair#*:} in $WHEELS"; fi
    fi
  done
  if [ "${#wheels[@]}" -gt 0 ]; then
    echo "installing from $WHEELS: ${wheels[*]##*/}"
    "$PY" -m pip install --no-index --no-deps --quiet "${wheels[@]}" || return 1
  fi
  if ! (cd / && env -u PYTHONPATH "$PY" -c "import varattn") 2>/dev/null; then
    "$PY" -m pip install --no-index --no-deps --no-build-isolation --quiet -e "$ROOT" \
      || echo "pip install -e failed; varattn comes from PYTHONPATH=$ROOT/src"
  fi
  (cd / && "$PY" -c "import sacremoses, subword_nmt, varattn; print('varattn from', varattn.__file__)")
}
export -f install
export PY WHEELS ROOT
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"  # works whether or not the editable install does

stage install "$L_INSTALL" bash -c install
stage speed "$L_SPEED" "$PY" benchmarks/speed.py --device "$DEVICE" "${SPEED_ARGS[@]}" --out "$OUTDIR/speed"
# the LSTM without input feeding (model.input_feed=false); its figures stay in WORK and go into the report
stage "speed no input feed" "$L_NO_FEED" "$PY" benchmarks/speed.py --device "$DEVICE" --no-input-feed \
  --modes soft marginal vae-enum vae-sample "${NO_FEED_ARGS[@]}" --out "$WORK/speed_no_input_feed"
# input feeding with the decoder loop replayed from CUDA graphs (model.cuda_graph=true; eager on a CPU)
stage "speed graphed" "$L_NO_FEED" "$PY" benchmarks/speed.py --device "$DEVICE" --cuda-graph \
  --modes soft marginal vae-enum vae-sample "${NO_FEED_ARGS[@]}" --out "$WORK/speed_graphed"
PREP_ARGS=(); [ "$TINY" = 1 ] && PREP_ARGS=(--tiny)
stage prepare "$L_PREPARE" "$PY" benchmarks/gpu_suite.py prepare --data "$DATA" --work "$WORK" "${PREP_ARGS[@]}"
for mode in $MODES; do
  limit=$(awk -v a="$TRAIN_S" -v b="$DECODE_S" -v c="$L_MODE_EXTRA" 'BEGIN { printf "%d", a + b + c + 0.5 }')
  stage "mode $mode" "$limit" "$PY" benchmarks/gpu_suite.py mode --mode "$mode" --work "$WORK" --device "$DEVICE" \
    --train-seconds "$TRAIN_S" --decode-seconds "$DECODE_S" "${MODE_ARGS[@]}"
done
# optional: the Transformer (issue 12), only when the config knows model.arch=transformer
if "$PY" -c "from varattn.models.registry import architecture; architecture('transformer')" 2>/dev/null; then
  stage "transformer speed" "$L_TRANSFORMER" "$PY" benchmarks/speed.py --device "$DEVICE" --arch transformer \
    --modes soft vae-enum "${TRANSFORMER_ARGS[@]}" --out "$OUTDIR/speed_transformer"
else
  echo "## transformer speed: skipped (model.arch=transformer not available)"
  printf '{"stage": "transformer speed", "status": "skipped (no model.arch)", "seconds": 0, "limit": 0}\n' >> "$WORK/stages.jsonl"
fi
timeout -k 5 60 "$PY" benchmarks/gpu_suite.py report --work "$WORK" --out "$OUTDIR" --command-line "$COMMAND_LINE"
echo "# gpu_suite done in $(( $(date +%s) - STARTED ))s; figures in $OUTDIR"
