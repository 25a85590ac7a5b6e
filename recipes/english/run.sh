#!/usr/bin/env bash
# General English: AN4 + speechocean762 (+ LibriSpeech manifests when given) -> one CTC model (characters or BPE pieces)
# -> a general-English word LM -> decode + score per corpus -> RESULTS.md -> an exported model folder.
#
#   bash recipes/english/run.sh [--stage N] [--stop-stage M] [--an4-dir DIR] [--speechocean-dir DIR]
#                               [--librispeech-manifests DIR] [--config conf/english_blstm256_bpe.yaml]
#                               [--exp-dir exp/english] [--weights an4=2,so762=1] [--overrides "train.seed=2"]
#                               [--synth-sentences 3000]
#
# Stages: 0 find the corpora, 1 manifests (dev = whole training speakers of each corpus held out;
#         test speakers reach neither training, the LM text nor model selection),
#         2 CMVN stats + vocabulary + the training-text LM + the general-English LM (pocketsphinx's
#           en-us 3-gram pruned and interpolated with the training transcripts; for a BPE model a piece
#           6-gram of sentences drawn from it); with --synth-sentences N also N sentences drawn from that
#           3-gram spoken by flite and espeak-ng (recipes/english/local/synthesize.py; apt install flite
#           espeak-ng) and mixed into training (train_synth.jsonl; CMVN, pieces and LMs stay the real
#           speech's), 3 train,
#         4 tune the LM weights on the pooled dev sets, decode (greedy, beam, beam + LM) and score
#           dev and test of each corpus, 5 export the ONNX model folder (exp/english/<run>/onnx).
# Each stage skips work that is already done, so a killed recipe resumes where it stopped.
# Without speechocean762 (../shared/data/speechocean762 or --speechocean-dir) the recipe stops with
# a message: its release is https://www.openslr.org/101/ (CC BY 4.0), unpack it and pass the folder.
set -euo pipefail

stage=0
stop_stage=5
an4_dir=""
so_dir=""
libri=""
config=conf/english_blstm256_bpe.yaml  # the bundled english model's (it trained 30 epochs: --overrides "train.epochs=30")
overrides=""
exp=exp/english
weights=an4=2,so762=1,librispeech=1
synth=0
python=${PYTHON:-python}

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --an4-dir) an4_dir=$2; shift 2 ;;
    --speechocean-dir) so_dir=$2; shift 2 ;;
    --librispeech-manifests) libri=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --overrides) overrides=$2; shift 2 ;;
    --exp-dir) exp=$2; shift 2 ;;
    --weights) weights=$2; shift 2 ;;
    --synth-sentences) synth=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

caller=$PWD
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../lib/stages.sh
. "$root/recipes/lib/stages.sh"
for var in an4_dir so_dir libri; do
  [ -z "${!var}" ] || printf -v "$var" '%s' "$(absolute "${!var}")"
done
[ "$exp" = exp/english ] || exp=$(absolute "$exp")
resolve_config
cd "$root"

data=$exp/data
run_name=$(basename "$config" .yaml); run_name=${run_name#english_}
run_dir=$exp/$run_name
train_split=train
dev_split=dev
eval_splits="dev_an4 dev_so762 test_an4 test_so762"
score_lm_dir=$data/char/lm_general
lm_description="pocketsphinx's general US-English 3-gram (BSD-2) pruned and interpolated with the training transcripts (recipes/english/local/build_lm.py)"
recipe_command="bash recipes/english/run.sh --config $config_arg${overrides:+ --overrides \"$overrides\"}"
[ "$synth" = 0 ] || recipe_command+=" --synth-sentences $synth"
mkdir -p "$data" "$run_dir"

is_an4() { [ -f "$1/etc/an4_train.fileids" ] && [ -f "$1/etc/an4_test.transcription" ]; }
is_speechocean() { [ -f "$1/train/wav.scp" ] && [ -f "$1/test/wav.scp" ]; }

find_corpora() {  # records the corpus folders in $data/corpora
  if [ -z "$an4_dir" ]; then
    an4_dir=../shared/data/an4
    is_an4 "$an4_dir" || { echo "run.sh: no AN4 at $an4_dir: run recipes/an4/run.sh --stop-stage 0 (it downloads AN4) and pass --an4-dir exp/an4/download/an4" >&2; exit 1; }
  fi
  is_an4 "$an4_dir" || { echo "run.sh: $an4_dir is not an AN4 folder (needs etc/an4_*.fileids and wav/)" >&2; exit 1; }
  [ -n "$so_dir" ] || so_dir=../shared/data/speechocean762
  is_speechocean "$so_dir" || { echo "run.sh: no speechocean762 at $so_dir (needs train/wav.scp and test/wav.scp): download it from https://www.openslr.org/101/, unpack it and pass --speechocean-dir" >&2; exit 1; }
  if [ -n "$libri" ] && [ ! -f "$libri/train.jsonl" ]; then
    echo "run.sh: $libri has no train.jsonl (make LibriSpeech manifests with recipes/librispeech/run.sh --stop-stage 1)" >&2; exit 1
  fi
  { echo "an4=$(cd "$an4_dir" && pwd)"; echo "so762=$(cd "$so_dir" && pwd)"; [ -z "$libri" ] || echo "librispeech=$(cd "$libri" && pwd)"; } > "$data/corpora"
  cat "$data/corpora" | sed 's/^/  /'
}

corpus() { grep "^$1=" "$data/corpora" | cut -d= -f2-; }

make_manifests() {
  if [ -f "$data/.manifests.done" ]; then
    echo "  already done ($data/*.jsonl)"; return
  fi
  [ -f "$data/corpora" ] || { echo "run.sh: run stage 0 first" >&2; exit 1; }
  $python recipes/an4/local/prepare.py --data-dir "$(corpus an4)" --out-dir "$data/an4"
  local extra=()
  [ -z "$(corpus librispeech)" ] || extra=(--librispeech "$(corpus librispeech)")
  $python recipes/english/local/prepare.py --an4 "$data/an4" --speechocean "$(corpus so762)" \
    --out-dir "$data" --weights "$weights" "${extra[@]}"
  touch "$data/.manifests.done"
}

general_lm() {  # the general-English LM the model decodes with (stage 4 and the export)
  if [ -f "$score_lm_dir/.done" ]; then
    echo "  already done ($score_lm_dir/lm.arpa)"; return
  fi
  $python recipes/english/local/build_lm.py --train-text "$data/lm_text.txt" --vocab "$units_dir/vocab.json" \
    --dev-manifest "$data/dev.jsonl" --out-dir "$score_lm_dir"
  touch "$score_lm_dir/.done"
}

synthetic_speech() {  # --synth-sentences N: general-English sentences in machine voices, mixed into training
  if [ -f "$data/.synth.done" ] && [ "$(cat "$data/.synth.done")" = "$synth" ]; then
    echo "  already done ($data/train_synth.jsonl)"; return
  fi
  local tests=()
  for split in $eval_splits; do
    case $split in test_*) tests+=("$data/$split.jsonl") ;; esac
  done
  $python recipes/english/local/synthesize.py --out-dir "$data/synth" --sentences "$synth" \
    --train-text "$data/lm_text.txt" --vocab "$units_dir/vocab.json" --exclude "$data/$dev_split.jsonl" "${tests[@]}"
  $python -m asr data mix "$data/$train_split.jsonl" "$data/synth/synth.jsonl" --out "$data/train_synth.jsonl"
  echo "$synth" > "$data/.synth.done"
}

noise_override() {  # the config's recorded-noise folder, or that augmentation off when it is absent
  local dir
  dir=$($python -c "import sys; from asr.config import load_config; from asr.runconfig import RunConfig
print(load_config(RunConfig, sys.argv[1]).augment.noise_dir)" "$config") || exit 1
  if [ -n "$dir" ] && [ ! -d "$dir" ]; then
    echo "  note: no noise recordings at $dir: training without them (augment.noise_dir_prob=0)" >&2
    overrides="augment.noise_dir_prob=0 $overrides"
  fi
}

export_model() {
  if [ -f "$run_dir/onnx/manifest.json" ]; then
    echo "  already done ($run_dir/onnx)"; return
  fi
  $python -m asr export --model "$run_dir/best_lm.pt" --onnx "$run_dir/onnx"
}

resolve_units
case $units_dir in
  */char) ;;
  *) score_lm_dir=$units_dir/lm_general  # pieces, no lexicon: words outside the LM's vocabulary stay writable
     lm_description="a 6-gram over BPE pieces: the training transcripts' interpolated with sentences drawn from pocketsphinx's general US-English 3-gram (BSD-2) (recipes/english/local/build_lm.py)" ;;
esac

run_stage 0 "find AN4 and speechocean762" find_corpora
run_stage 1 "manifests (speaker-disjoint dev per corpus, weighted training mix)" make_manifests
run_stage 2 "CMVN stats, vocabulary and n-gram LMs (training transcripts; general English)" stage_stats
run_stage 2 "general-English word LM" general_lm
if [ "$synth" != 0 ]; then
  run_stage 2 "synthetic speech: $synth sentences (flite, espeak-ng)" synthetic_speech
  train_split=train_synth  # training only: CMVN, pieces and LMs above are the real speech's
fi
noise_override
run_stage 3 "train ($config -> $run_dir)" stage_train
run_stage 4 "tune LM weights on dev, decode and score" stage_score
run_stage 5 "export the ONNX model folder" export_model
