#!/usr/bin/env bash
# bash cpp/bench.sh BUILD_DIR [RUNS]: ms per face of facealign-cpp for each backend built, 1 and 2 threads,
# landmarks for a given box (samples/face.jpg) and YuNet + landmarks (samples/two_faces.jpg). Prints, asserts nothing.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
EXE="$1/samples/cpp/facealign-cpp"
RUNS=${2:-50}
BACKENDS=$("$EXE" --help | sed -n 's/.*--backend \([a-z|]*\)\].*/\1/p' | tr '|' ' ')
for backend in $BACKENDS; do
  if [ "$backend" = tensorrt ] && ! ls "$REPO"/models/fabrec-scaf-w32/model_*.engine >/dev/null 2>&1; then
    echo "tensorrt: no engine in models/fabrec-scaf-w32 (facealign export --to trt), skipped"
    continue
  fi
  for threads in 1 2; do
    for args in "$REPO/samples/face.jpg --box 200,118,395,398 --repeat $RUNS" "$REPO/samples/two_faces.jpg --repeat $((RUNS / 2))"; do
      # shellcheck disable=SC2086
      line=$("$EXE" $args --backend "$backend" --threads "$threads" 2>&1 >/dev/null | grep "^benchmark:")
      echo "threads $threads: ${line#benchmark: }" | sed 's/ (.*//'
    done
  done
done
