#!/usr/bin/env bash
# talkclip's CUDA checks and GPU figures in one command, for a lent GPU machine with no network.
# Pack the kit here first (bash bench/gpu/pack.sh), carry .gpu-kit, then there, from the
# repository root:
#     bash bench/gpu/check.sh
#     QUICK=1 bash bench/gpu/check.sh       # a dry run on a CPU: one repeat each, --device cpu
# Each step runs under its own time limit, cut to what is left of DEADLINE (seconds for the whole
# script, default 480, so that a device call of 9 minutes returns everything); a step with under
# 20 s left is skipped. The next step runs whatever happened to the last. summary.txt grows by a
# line per step (name, exit code, seconds; exit 1 at the end when any step failed or was skipped).
# Everything printed goes to check.log; with them in $OUT (when set; 7 files in all) or
# ./gpu-check: generate.mp4 + generate.csv, and the loss plots train_log.png, sync_log.png and
# renderer_log.png.
#
# Steps, most wanted first: the environment (stops everything when CUDA is missing, QUICK aside);
# the renderer's CUDA test (frames within 2 grey levels of the CPU's); the generate figures for the
# base model at 256 px (real-time factor, streaming, bf16 against fp32 PSNR) and 512 px;
# `talkclip train`, `train-sync` and `train-renderer` on the demo build with --device cuda (bf16
# autocast), then `talkclip generate --device cuda` from the trained checkpoint; the training
# figures (bench/train_speed.py: tiny on CPU, base on CUDA).
# Not covered: DDP over NCCL, which needs two GPUs (two ranks cannot share one under NCCL).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KIT=${KIT:-$ROOT/.gpu-kit}
LOGS=${OUT:-$ROOT/gpu-check}
DEADLINE=${DEADLINE:-480}
PY=${PYTHON:-python3}
if [ "${QUICK:-0}" = 1 ]; then DEV=cpu; R256=1; R512=1; else DEV=cuda; R256=4; R512=3; fi

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$LOGS" "$W/pkg"
rm -f "$LOGS/check.log" "$LOGS/summary.txt"
[ -f "$KIT/kit.tar.xz" ] || { echo "check.sh: no $KIT/kit.tar.xz: run bench/gpu/pack.sh here and carry .gpu-kit" >&2; exit 2; }
"$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="data")' "$KIT/kit.tar.xz" "$W" \
  || { echo "check.sh: cannot unpack $KIT/kit.tar.xz" >&2; exit 2; }
ln -s "$ROOT" "$W/pkg/talkclip"          # the repository root is the talkclip package
export PYTHONPATH="$W/pkg:$W/site:$ROOT/tests" TALKCLIP_CACHE="$W/cache" TALKCLIP_FIXTURES="$W/fixtures"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
TC=("$PY" -c "from talkclip.cli import app; app()")
B="$W/demo/ta-mead"

failed=0
step() {   # step NAME SECONDS CMD...: run with a limit, append to check.log and summary.txt
  local name=$1 limit=$2; shift 2
  local left=$((DEADLINE - SECONDS)) rc t0=$SECONDS
  [ "$limit" -le "$left" ] || limit=$left
  echo "== $name (limit ${limit}s)" | tee -a "$LOGS/check.log"
  if [ "$limit" -lt 20 ]; then
    rc=skipped
  else
    timeout -k 15 "$limit" "$@" 2>&1 | tee -a "$LOGS/check.log"
    rc=${PIPESTATUS[0]}
  fi
  [ "$rc" = 0 ] || failed=1
  printf '%-16s rc %-7s %4ss\n' "$name" "$rc" $((SECONDS - t0)) >> "$LOGS/summary.txt"
  [ "$rc" = 0 ]
}

step env 60 bash -c "nvidia-smi -L; $PY -c 'import torch, av, mediapipe, open_clip, numpy
cuda = torch.cuda.is_available()
print(\"torch\", torch.__version__, \"cuda\", cuda, torch.cuda.get_device_name(0) if cuda else \"\",
      \"bf16\", cuda and torch.cuda.is_bf16_supported())
print(\"av\", av.__version__, \"mediapipe\", mediapipe.__version__, \"open_clip\", open_clip.__version__,
      \"numpy\", numpy.__version__)
assert cuda or \"$DEV\" == \"cpu\", \"no CUDA device: nothing to check\"'" \
  || { echo "check.sh: the environment is not usable (see above)" >&2; cat "$LOGS/summary.txt"; exit 2; }
step renderer-test 180 "$PY" -m pytest -q -p no:cacheprovider -n 0 "$ROOT/tests/model/test_renderer.py" -k cuda -rs
step speed-256 200 "$PY" "$ROOT/bench/generate_speed.py" --device "$DEV" --size 256 --threads 0 --repeats "$R256" \
  --precision fp32 auto --precision-check
step speed-512 120 "$PY" "$ROOT/bench/generate_speed.py" --device "$DEV" --size 512 --threads 0 --repeats "$R512" --no-stream
step train 90 "${TC[@]}" train --data "$B" --config tiny --out "$W/ck" --steps 200 --device "$DEV" \
  && step generate 60 "${TC[@]}" generate --checkpoint "$W/ck" --image "$W/fixtures/faces/smile.jpg" \
       --audio "$W/fixtures/speech/hello_en.wav" --text "a happy man talking with lip corners pulled" \
       --out "$LOGS/generate.mp4" --device "$DEV" --export-blendshapes "$LOGS/generate.csv"
step train-sync 60 "${TC[@]}" train-sync --data "$B" --config tiny --out "$W/sync" --steps 100 --device "$DEV"
step train-renderer 60 "${TC[@]}" train-renderer --data "$B" --mead "$W/demo/mead" --config renderer-tiny \
  --out "$W/nr" --steps 50 --device "$DEV"
step train-speed 90 "$PY" "$ROOT/bench/train_speed.py" --steps 30
cp "$W"/ck/train_log.png "$W"/sync/sync_log.png "$W"/nr/renderer_log.png "$LOGS/" 2>/dev/null

echo "== summary (logs in $LOGS)"
cat "$LOGS/summary.txt"
exit $failed
