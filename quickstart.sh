#!/usr/bin/env bash
# Fresh start: a virtual environment with the CPU build of PyTorch, sweeper itself, then the
# quick study (32 small models, under a minute on 2 cores), ending in its table.
#   bash quickstart.sh                 # data from $SWEEPER_DATA_DIR, else ../shared/data, else downloaded
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
# torch first, pinned: any other torch requirement would make pip pick a multi-GB CUDA build.
.venv/bin/pip install --quiet torch==2.13.0
.venv/bin/pip install --quiet -e '.[test]'
if [ -z "${SWEEPER_DATA_DIR:-}" ] && [ -d ../shared/data/obesity ]; then
  export SWEEPER_DATA_DIR="$(cd ../shared/data && pwd)"
fi
# quick.db, not the shipped results.db, so the repository's reproduction stays as committed.
.venv/bin/sweeper run studies/quick.toml --db quick.db --no-progress
