#!/usr/bin/env bash
# The landmark stage on a lent GPU machine, in one device call of under 10 minutes.
#
# Here, once per change of data or settings (README, "Training on a lent GPU"):
#   facealign train pack --config configs/gpu_wild.json --out runs/gpu/pack.tar.gz \
#       --every ../shared/data/ytf68/train=2 --quality 75 --crop-pixels 192 --max-mb 21
#   bash scripts/gpu_wheels.sh                 # pydantic & co. for the machine's Python (runs/gpu/wheels)
#   bash scripts/gpu_train.sh check            # what the call will send: under 64 MiB?
# The device call: command "bash scripts/gpu_train.sh run configs/gpu_wild.json", carry ["runs/gpu"],
# timeout_s 560. It unpacks the data where the config expects it (../shared/data), trains until the config's
# time_limit_minutes, and writes to $OUT: model/ (the best checkpoint released: fp16 safetensors + manifest,
# 12 MB, under the 16 MiB a returned file may have), log.jsonl, config.json, train.log.
# Back here: fit conventions, evaluate and export as for any run (models/fabrec-scaf-w32/CARD.md).
set -euo pipefail
cd "$(dirname "$0")/.."
limit=$((64 * 1024 * 1024))

check() {
  local tracked untracked carried total
  # one du over all the names (xargs would split a long list into several totals, and tail keeps the last)
  tracked=$(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  untracked=$(git ls-files -z --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  for need in runs/gpu/pack.tar.gz runs/gpu/wheels; do
    [ -e "$need" ] || { echo "missing $need (see the top of $0)" >&2; exit 2; }
  done
  carried=$(du -sb runs/gpu | cut -f1)
  total=$((tracked + ${untracked:-0} + carried))
  echo "sent: tracked $tracked + untracked ${untracked:-0} + runs/gpu $carried = $total bytes (limit $limit)"
  [ "$total" -le "$limit" ] || { echo "over the device call's 64 MiB: pack less (--max-mb) or clean the tree" >&2; exit 1; }
}

run() {
  local config=$1 out=${OUT:?the device call sets OUT} run_dir data=../shared/data stamp sum
  mkdir -p "$out"
  # what is there already is used: pydantic where it is installed, ../shared/data where it holds the data sets
  # themselves (a machine that has them). A folder this script unpacked (its stamp names the pack) is replaced
  # when the call carries another pack: a warm machine keeps ../shared/data from the call before
  if ! python3 -c "import pydantic" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site runs/gpu/wheels/*.whl
  fi
  export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
  stamp=$data/.facealign-pack.sha256
  sum=$(sha256sum runs/gpu/pack.tar.gz | cut -d' ' -f1)
  if [ ! -d "$data" ] || { [ -f "$stamp" ] && [ "$(cat "$stamp")" != "$sum" ]; }; then
    rm -rf "$data" && mkdir -p "$data"
    tar -xzf runs/gpu/pack.tar.gz -C "$data"
    echo "$sum" > "$stamp"
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  # the run folder as the training reads it (the config may leave it at its default)
  run_dir=$(python3 -c "import sys; from facealign_sdk.training.landmarks import LandmarkConfig
print(LandmarkConfig.model_validate_json(open(sys.argv[1]).read()).run_dir)" "$config")
  python3 -m facealign_sdk.cli.main train --no-progress landmarks --config "$config" 2>&1 | tee "$out/train.log"
  python3 -m facealign_sdk.cli.main train release --checkpoint "$run_dir/best.pt" --out "$out/model"
  cp "$run_dir/log.jsonl" "$run_dir/config.json" "$out/"
}

case "${1:-}" in
  check) check ;;
  run) run "${2:?usage: $0 run CONFIG}" ;;
  *) echo "usage: $0 check | run CONFIG" >&2; exit 2 ;;
esac
