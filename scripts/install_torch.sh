#!/usr/bin/env bash
# Install PyTorch's CPU build into a Python environment, before sweeper (whose torch requirement
# pip would otherwise satisfy from PyPI with the multi-GB CUDA build on Linux).
#
#   bash scripts/install_torch.sh [--index-url URL] PYTHON PIP_INSTALL_ARGS...
#   bash scripts/install_torch.sh .venv/bin/python torch==2.13.0
#
# The index: URL (default $TORCH_INDEX, else PyTorch's CPU wheel index) when it answers;
# otherwise pip's own configuration (PIP_INDEX_URL, pip.conf, find-links: e.g. a local directory
# holding the CPU wheel, as on machines whose only way out is a mirror), said on stderr. An empty
# URL means pip's configuration; a CUDA index (https://download.pytorch.org/whl/cu126) gives the
# CUDA build.
#
# Sourced (`source scripts/install_torch.sh`), it defines the functions and installs nothing.

TORCH_CPU_INDEX="https://download.pytorch.org/whl/cpu"

# torch_index_reachable PYTHON INDEX: whether INDEX serves a torch project page (PEP 503), within
# 10 seconds. A file: index counts when its torch/ directory exists.
torch_index_reachable() {
  "$1" - "$2" <<'PY'
import os
import sys
import urllib.parse
import urllib.request

page = sys.argv[1].rstrip("/") + "/torch/"
parts = urllib.parse.urlsplit(page)
if parts.scheme == "file":
    sys.exit(0 if os.path.isdir(urllib.request.url2pathname(parts.path)) else 1)
try:
    urllib.request.urlopen(page, timeout=10).close()
except Exception:  # DNS, refused, timeout, HTTP error, malformed URL: not usable
    sys.exit(1)
PY
}

# torch_index PYTHON: print the index to install torch from ($TORCH_INDEX, unset: the CPU index)
# when it answers; print nothing for pip's configuration.
torch_index() {
  local index="${TORCH_INDEX-$TORCH_CPU_INDEX}"
  if [ -z "$index" ]; then
    return 0
  fi
  if torch_index_reachable "$1" "$index"; then
    printf '%s\n' "$index"
  else
    echo "note: $index is not reachable; installing torch from pip's configured index" \
      "(on a machine without a GPU, check that it serves the CPU build)" >&2
  fi
}

# install_torch PYTHON PIP_INSTALL_ARGS...: pip install them from `torch_index`.
install_torch() {
  local python="$1"
  shift
  local index
  index="$(torch_index "$python")"
  if [ -n "$index" ]; then
    echo "torch from $index" >&2
    "$python" -m pip install --quiet --index-url "$index" "$@"
  else
    echo "torch from pip's configuration" >&2
    "$python" -m pip install --quiet "$@"
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  if [ "${1:-}" = "--index-url" ]; then
    TORCH_INDEX="${2-}"
    shift 2
  fi
  if [ "$#" -lt 2 ]; then
    echo "usage: bash scripts/install_torch.sh [--index-url URL] PYTHON PIP_INSTALL_ARGS..." >&2
    exit 2
  fi
  install_torch "$@"
fi
