#!/usr/bin/env bash
# bash cpp/build.sh BUILD_DIR: install what the C++ build needs, configure, build and run ctest.
#
# On a Debian 12 machine (root or sudo): apt packages (compiler, CMake, OpenCV core/imgproc/imgcodecs,
# nlohmann-json); the ONNX Runtime C/C++ headers, which Debian 12 lacks, from Debian 13's
# libonnxruntime-dev (downloaded with a private apt sources list derived from this machine's own, the
# system's sources untouched, and unpacked into BUILD_DIR/_deps); a Python environment with the
# onnxruntime and openvino wheels (their libraries are what the backends run). The Python environment:
# $FACEALIGN_PYTHON, else the active virtualenv, else the repo's .venv (created when missing).
# FACEALIGN_JOBS sets the build's parallelism (default: all cores).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: bash cpp/build.sh BUILD_DIR" >&2
  exit 2
fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
BUILD=$(cd "$1" && pwd)
DEPS="$BUILD/_deps"
START=$SECONDS
log() { echo "[cpp/build.sh $((SECONDS - START))s] $*"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- apt packages (only the missing ones) ---
PACKAGES="cmake g++ make pkg-config libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev nlohmann-json3-dev python3-venv"
MISSING=""
for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || MISSING="$MISSING $p"; done
if [ -n "$MISSING" ]; then
  log "apt-get install$MISSING"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $MISSING >/dev/null
fi

# --- ONNX Runtime headers from Debian 13 (trixie) ---
ORT_ROOT="$DEPS/onnxruntime-dev"
if [ ! -f "$ORT_ROOT/usr/include/onnxruntime/onnxruntime_cxx_api.h" ]; then
  log "fetching libonnxruntime-dev (headers) from the trixie suite"
  APT="$DEPS/apt"
  mkdir -p "$APT/sources.list.d" "$APT/lists/partial" "$APT/cache/archives/partial"
  SYSTEM_SOURCES=/etc/apt/sources.list.d/debian.sources
  [ -f "$SYSTEM_SOURCES" ] || { echo "cpp/build.sh: $SYSTEM_SOURCES not found (a Debian 12 machine is expected)" >&2; exit 1; }
  CODENAME=$(. /etc/os-release && echo "$VERSION_CODENAME")
  # the main archive's stanza (suite "$CODENAME", not -security / -updates), suite renamed to trixie
  awk -v suite="$CODENAME" 'BEGIN { RS = ""; ORS = "\n\n" } $0 ~ ("Suites:[^\n]*[ ]" suite "([ \n]|$)") { print }' \
    "$SYSTEM_SOURCES" | sed -E 's/^Suites:.*/Suites: trixie/' > "$APT/sources.list.d/trixie.sources"
  grep -q "^Suites: trixie" "$APT/sources.list.d/trixie.sources" || {
    echo "cpp/build.sh: no '$CODENAME' stanza in $SYSTEM_SOURCES to derive the trixie source from" >&2; exit 1; }
  APT_OPTS=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$APT/sources.list.d"
            -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o "Dir::State::status=/dev/null"
            -o "Debug::NoLocking=1")
  apt-get "${APT_OPTS[@]}" update -qq
  (cd "$DEPS" && apt-get "${APT_OPTS[@]}" download libonnxruntime-dev 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
  DEB=$(ls "$DEPS"/libonnxruntime-dev_*.deb 2>/dev/null | head -n 1)
  [ -n "$DEB" ] || { echo "cpp/build.sh: could not download libonnxruntime-dev" >&2; exit 1; }
  dpkg -x "$DEB" "$ORT_ROOT"
fi

# --- Python environment with the runtime wheels ---
if [ -n "${FACEALIGN_PYTHON:-}" ]; then
  PY=$FACEALIGN_PYTHON
elif [ -n "${VIRTUAL_ENV:-}" ]; then
  PY="$VIRTUAL_ENV/bin/python"
elif [ -x "$REPO/.venv/bin/python" ]; then
  PY="$REPO/.venv/bin/python"
else
  log "creating $REPO/.venv"
  python3 -m venv "$REPO/.venv"
  PY="$REPO/.venv/bin/python"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q -e "$REPO[dev]"
fi
if ! "$PY" -c "import onnxruntime, openvino" 2>/dev/null; then
  log "pip install the runtime wheels into $PY"
  "$PY" -m pip install -q "onnxruntime>=1.17" "openvino>=2024.0"  # as pyproject's [cpp] extra
fi

# --- configure, build, test ---
log "configure"
cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFACEALIGN_PYTHON="$PY" -DONNXRUNTIME_ROOT="$ORT_ROOT" \
  > "$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log"; exit 1; }
grep -A2 "facealign:" "$BUILD/configure.log" | grep -v "^--$" || true
log "build"
cmake --build "$BUILD" -j "${FACEALIGN_JOBS:-$(nproc)}" > "$BUILD/build.log" 2>&1 || { cat "$BUILD/build.log"; exit 1; }
log "ctest"
ctest --test-dir "$BUILD" --output-on-failure
grep -o "benchmark: .*" "$BUILD/Testing/Temporary/LastTest.log" || true  # timings, not asserted
log "done"
