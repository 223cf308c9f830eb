#!/usr/bin/env bash
# talkclip's CUDA checks and GPU figures in one command, for a lent GPU machine with no network.
# Pack the kit here first (bash bench/gpu/pack.sh), carry .gpu-kit, then there, from the repository
# root:
#     bash bench/gpu/check.sh                # QUICK=1: one repeat each, for a dry run on a CPU
# Each step runs under its own time limit and the next one runs whatever happened; a summary of
# the steps' exit codes comes last (exit 1 when any step failed). Everything goes to one log, check.log, beside summary.txt and the
# generated generate.mp4 + generate.csv, in $OUT (the device tool's folder) or ./gpu-check.
#
# Steps: the environment; the renderer's CUDA test (frames within 2 grey levels of the CPU's);
# `talkclip train`, `train-sync` and `train-renderer` on the demo build with --device cuda (bf16
# autocast), then `talkclip generate --device cuda` from the trained checkpoint; the generate
# figures for the base model at 256 and 512 px (real-time factor, streaming, bf16 against fp32
# PSNR); the training figures (bench/train_speed.py: tiny on CPU, base on CUDA).
# Not covered: DDP over NCCL, which needs two GPUs (two ranks cannot share one under NCCL).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KIT=${KIT:-$ROOT/.gpu-kit}
LOGS=${OUT:-$ROOT/gpu-check}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$LOGS" "$W/pkg"
rm -f "$LOGS/check.log"
[ -f "$KIT/kit.tar.xz" ] || { echo "check.sh: no $KIT/kit.tar.xz: run bench/gpu/pack.sh here and carry .gpu-kit" >&2; exit 2; }
PY=${PYTHON:-python3}
"$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="data")' "$KIT/kit.tar.xz" "$W"
ln -s "$ROOT" "$W/pkg/talkclip"          # the repository root is the talkclip package
export PYTHONPATH="$W/pkg:$W/site:$ROOT/tests" TALKCLIP_CACHE="$W/cache" TALKCLIP_FIXTURES="$W/fixtures"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
TC=("$PY" -c "from talkclip.cli import app; app()")
DEV=cuda
if [ "${QUICK:-0}" = 1 ]; then DEV=cpu; R256=1; R512=1; else R256=4; R512=3; fi

summary=(); failed=0
step() {   # step NAME SECONDS CMD...: run with a limit, append to check.log, remember the exit code
  local name=$1 limit=$2; shift 2
  echo "== $name" | tee -a "$LOGS/check.log"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$LOGS/check.log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || failed=1
  summary+=("$(printf '%-16s rc %-3s %4ss' "$name" "$rc" $((SECONDS - t0)))")
}

step env 60 bash -c "nvidia-smi -L; $PY -c 'import torch, av, mediapipe, open_clip, numpy
print(\"torch\", torch.__version__, \"cuda\", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"\",
      \"bf16\", torch.cuda.is_available() and torch.cuda.is_bf16_supported())
print(\"av\", av.__version__, \"mediapipe\", mediapipe.__version__, \"open_clip\", open_clip.__version__, \"numpy\", numpy.__version__)'"
step renderer-test 180 "$PY" -m pytest -q -p no:cacheprovider -n 0 "$ROOT/tests/model/test_renderer.py" -k cuda -rs
B="$W/demo/ta-mead"
step train 240 "${TC[@]}" train --data "$B" --config tiny --out "$W/ck" --steps 200 --device "$DEV"
step train-sync 180 "${TC[@]}" train-sync --data "$B" --config tiny --out "$W/sync" --steps 100 --device "$DEV"
step train-renderer 180 "${TC[@]}" train-renderer --data "$B" --mead "$W/demo/mead" --config renderer-tiny \
  --out "$W/nr" --steps 50 --device "$DEV"
step generate 120 "${TC[@]}" generate --checkpoint "$W/ck" --image "$W/fixtures/faces/smile.jpg" \
  --audio "$W/fixtures/speech/hello_en.wav" --text "a happy man talking with lip corners pulled" \
  --out "$LOGS/generate.mp4" --device "$DEV" --export-blendshapes "$LOGS/generate.csv"
step speed-256 300 "$PY" "$ROOT/bench/generate_speed.py" --device "$DEV" --size 256 --threads 0 --repeats "$R256" \
  --precision fp32 auto --precision-check
step speed-512 240 "$PY" "$ROOT/bench/generate_speed.py" --device "$DEV" --size 512 --threads 0 --repeats "$R512" --no-stream
step train-speed 180 "$PY" "$ROOT/bench/train_speed.py" --steps 30

echo "== summary (logs in $LOGS)"
printf '%s\n' "${summary[@]}" | tee "$LOGS/summary.txt"
exit $failed
