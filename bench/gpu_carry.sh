#!/usr/bin/env bash
# Make what bench/gpu_checks.sh needs on a GPU machine that can reach nothing (no PyPI, no
# ../shared/data), in .gpu_carry/ (git-ignored through .git/info/exclude):
#   .gpu_carry/whl/  the project's dependencies missing from that machine's image (Python 3.12 wheels)
#   .gpu_carry/an4/  AN4 as FLAC (lossless, 44 MB instead of 92 MB of WAV) with its etc/ and licence
#
#   bash bench/gpu_carry.sh [--an4 ../shared/data/an4]     # here, before the device run
#   bash bench/gpu_carry.sh --detach-bundled                # so that the tree fits the 64 MiB a run carries
#   bash bench/gpu_carry.sh --restore                       # after it
#
# A device run carries the tracked files too; the bundled model (asr/pretrained, 26 MB) is not
# needed there, so --detach-bundled takes it out of the index (the files stay on disk) and ignores it
# for the run; --restore puts it back exactly. Nothing is committed either way.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
carry=.gpu_carry
an4=../shared/data/an4
exclude=.git/info/exclude
bundled=asr/pretrained
python=${PYTHON:-python}
# The wheels: every runtime dependency in pyproject.toml that the GPU image lacks (see
# /work/.library/device/KINDS.md for its package list), pinned to what the tests ran with here.
wheels="soundfile==0.14.0 soxr==1.1.0 librosa==0.11.0 audioread==3.1.0 decorator==5.3.1 pooch==1.9.0
platformdirs==4.14.8 jiwer==4.0.0 rapidfuzz==3.14.6 flashlight-text==0.0.7 pyroomacoustics==0.10.1"

ignore() { grep -qxF "$1" "$exclude" 2>/dev/null || echo "$1" >> "$exclude"; }
unignore() { [ -f "$exclude" ] && sed -i "\\#^$1\$#d" "$exclude"; }

case "${1:-}" in
  --detach-bundled)
    ignore "/$bundled/"
    git rm -r -q --cached "$bundled"
    echo "gpu_carry: $bundled out of the index for the device run (files kept); undo with --restore"
    exit 0 ;;
  --restore)
    unignore "/$bundled/"
    git reset -q -- "$bundled"
    git status --short -- "$bundled"
    echo "gpu_carry: $bundled tracked again"
    exit 0 ;;
  --an4) an4=$2 ;;
  "") ;;
  *) echo "gpu_carry.sh: unknown option $1 (see the header)" >&2; exit 2 ;;
esac

[ -f "$an4/etc/an4_train.fileids" ] || { echo "gpu_carry.sh: $an4 is not an AN4 folder" >&2; exit 1; }
ignore "/$carry/"
mkdir -p "$carry/whl"
# shellcheck disable=SC2086
$python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d "$carry/whl" $wheels
$python - "$an4" "$carry/an4" <<'EOF'
"""WAV -> FLAC (16-bit, same samples), etc/ and the licence copied; files already there are kept."""
import shutil
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

source, target = Path(sys.argv[1]), Path(sys.argv[2])
for name in ("etc", "LICENSE", "README.md"):
    if (source / name).is_dir():
        shutil.copytree(source / name, target / name, dirs_exist_ok=True)
    elif (source / name).is_file():
        shutil.copy2(source / name, target / name)
count = 0
for wav in sorted((source / "wav").rglob("*.wav")):
    flac = target / wav.relative_to(source).with_suffix(".flac")
    if flac.is_file():
        continue
    samples, rate = sf.read(wav, dtype="int16")
    flac.parent.mkdir(parents=True, exist_ok=True)
    sf.write(flac, samples, rate, subtype="PCM_16")
    assert np.array_equal(sf.read(flac, dtype="int16")[0], samples), flac  # lossless
    count += 1
print(f"gpu_carry: {count} files converted to FLAC in {target}")
EOF
du -sh "$carry/whl" "$carry/an4"
echo "gpu_carry: ready. Tracked files that travel too: $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) bytes"
