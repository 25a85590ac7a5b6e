#!/usr/bin/env bash
# The GPU path, run and measured in one go (issue 18), on a machine with a CUDA GPU:
#
#   bash bench/gpu_checks.sh [--carry .gpu_carry] [--budget 480] [--smoke]
#
# Made for a GPU machine that reaches nothing: bench/gpu_carry.sh prepares, on a machine with
# PyPI and ../shared/data, the wheels its image lacks and AN4 as FLAC in .gpu_carry/. Steps, each
# under its own time limit (a step that fails or runs out is recorded and the next one runs):
#   setup       the carried wheels installed to /tmp/site; nvidia-smi, versions
#   tests       tests/test_cuda.py: pinned copies, fp32/bf16/fp16 steps, cuDNN = native = CPU,
#               training on the GPU decoded on the CPU, exact resume
#   data        AN4 recipe stages 0-2 (manifests, CMVN, vocabulary, 3-gram LM) in exp/an4
#   an4_speed   bench/train_throughput.py, AN4 config, CUDA rows -> results/gpu_train_throughput_an4.json
#   ls_speed    the same with the LibriSpeech model -> results/gpu_train_throughput_librispeech.json
#               (hours per epoch of train-clean-100 and 960 h in each row)
#   recipe      AN4 recipe stages 3-4 on the GPU: train, tune the LM on dev, decode, score
# Everything lands in $OUT (or exp/gpu_checks): summary.txt, steps.json and gpu_checks.tar.gz
# (logs, result JSONs, RESULTS.md, metrics.csv). --smoke runs the same plumbing tiny, on the CPU
# when there is no GPU: what the development machine checks before a device run.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
carry=.gpu_carry
budget=480
smoke=0
scale=1  # time limits x this (--smoke: x3, for a slow development machine)
while [ $# -gt 0 ]; do
  case "$1" in
    --carry) carry=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --smoke) smoke=1; scale=3; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu_checks.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
out=${OUT:-$root/exp/gpu_checks}
work=$root/exp/gpu_checks_work
mkdir -p "$out" "$work"
python=${PYTHON:-python3}
export PYTHON=$python  # the recipes' interpreter too (a GPU image may have no `python`)
export PYTHONUNBUFFERED=1
started=$SECONDS
steps_json=$work/steps.jsonl
: > "$steps_json"

say() { echo "[gpu_checks +$(( SECONDS - started ))s] $*" | tee -a "$work/summary.txt"; }
left() { echo $(( budget - (SECONDS - started) )); }
step() {  # step NAME LIMIT command...: run under `timeout`, log to $work/NAME.log, record exit and time
  local name=$1 limit=$(( $2 * scale )) begun=$SECONDS rc
  shift 2
  [ "$limit" -gt "$(left)" ] && limit=$(left)
  if [ "$limit" -le 5 ]; then
    say "$name: skipped, no time left"
    echo "{\"step\": \"$name\", \"exit\": null, \"seconds\": 0, \"note\": \"no time left\"}" >> "$steps_json"
    return
  fi
  say "$name: started (limit ${limit} s)"
  timeout --signal=INT --kill-after=15 "$limit" "$@" > "$work/$name.log" 2>&1
  rc=$?
  say "$name: exit $rc in $(( SECONDS - begun )) s$([ $rc -eq 124 ] && echo ' (time limit)')"
  tail -n 3 "$work/$name.log" | sed 's/^/    /' | tee -a "$work/summary.txt"
  echo "{\"step\": \"$name\", \"exit\": $rc, \"seconds\": $(( SECONDS - begun )), \"limit\": $limit}" >> "$steps_json"
}

setup() {
  if [ "$smoke" = 0 ] && [ -d "$carry/whl" ]; then  # Python 3.12 wheels, for the GPU image
    $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      "$carry"/whl/*.whl || return 1
  fi
  nvidia-smi || true
  $python - <<'EOF'
import importlib, sys
import torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version(), "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
for name in ("torchaudio", "soundfile", "soxr", "librosa", "jiwer", "flashlight.lib.text", "pyroomacoustics", "onnxruntime"):
    module = importlib.import_module(name)
    print(name, getattr(module, "__version__", "?"))
EOF
}

export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
[ "$smoke" = 1 ] || export PYTHONPATH=/tmp/site:$PYTHONPATH
an4=$carry/an4
[ -f "$an4/etc/an4_train.fileids" ] || an4=../shared/data/an4
cuda=$($python -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
workers=8
if [ "$smoke" = 1 ]; then
  exp=$work/an4_smoke
  speed_args=(--quick --workers 1 --threads 2)
  an4_variants=bucketed,ceiling; ls_variants=bucketed,ceiling
  recipe_overrides="train.epochs=1 train.threads=2"
else
  exp=exp/an4
  speed_args=(--warmup 5 --steps 40 --workers $workers --threads 4)
  an4_variants=cuda_fp32,cuda_bf16,cuda_fp16,cuda_fp32_nocudnn,cuda_bf16_nocudnn,cuda_bf16_random,cuda_fp32_preloaded,cuda_bf16_preloaded,cuda_ceiling_fp32,cuda_ceiling_bf16
  ls_variants=cuda_fp32,cuda_bf16,cuda_bf16_preloaded,cuda_ceiling_fp32,cuda_ceiling_bf16
  recipe_overrides="train.device=cuda train.num_workers=$workers train.threads=4"
fi
[ "$cuda" = 1 ] || [ "$smoke" = 1 ] || say "no CUDA GPU visible: the CUDA rows will be skipped (use --smoke on a CPU machine)"

export -f setup
export smoke carry python
step setup 60 bash -c setup
step tests 150 $python -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py
step data 150 bash recipes/an4/run.sh --data-dir "$an4" --exp-dir "$exp" --stop-stage 2
# the throughput bench reads exp/an4/data (conf/an4_blstm.yaml); a smoke run points it there too
[ "$exp" = exp/an4 ] || { mkdir -p exp/an4; [ -e exp/an4/data ] || ln -s "$exp/data" exp/an4/data; }
step an4_speed 200 $python bench/train_throughput.py "${speed_args[@]}" --variants "$an4_variants" \
  --name gpu_train_throughput_an4$([ "$smoke" = 1 ] && echo _smoke)
step ls_speed 120 $python bench/train_throughput.py "${speed_args[@]}" --variants "$ls_variants" \
  --model-config conf/librispeech_blstm.yaml --name gpu_train_throughput_librispeech$([ "$smoke" = 1 ] && echo _smoke)
step recipe 900 bash recipes/an4/run.sh --data-dir "$an4" --exp-dir "$exp" --stage 3 --overrides "$recipe_overrides"

say "done in $(( SECONDS - started )) s"
cp "$work/summary.txt" "$out/summary.txt"
$python -c "import json, sys; print(json.dumps([json.loads(l) for l in open(sys.argv[1])], indent=1))" \
  "$steps_json" > "$out/steps.json"
tar czf "$out/gpu_checks.tar.gz" -C "$root" \
  $(cd "$root" && ls -d exp/gpu_checks_work/*.log bench/results/gpu_train_throughput_*.json \
      "${exp#"$root"/}"/blstm/RESULTS.md "${exp#"$root"/}"/blstm/metrics.csv "${exp#"$root"/}"/blstm/train.log \
      "${exp#"$root"/}"/blstm/config.yaml 2>/dev/null)
ls -la "$out"
