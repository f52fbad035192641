#!/usr/bin/env bash
# Fresh start: a virtual environment with the CPU build of PyTorch, sweeper itself, then the
# quick study (32 small models, under a minute on 2 cores), ending in its table.
#   bash quickstart.sh                 # data from $SWEEPER_DATA_DIR, else ../shared/data, else downloaded
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
# torch first, pinned, from PyTorch's CPU wheel index (else pip's configuration, e.g. a local
# wheel directory): from PyPI, Linux gets the multi-GB CUDA build. TORCH_INDEX overrides the index.
bash scripts/install_torch.sh .venv/bin/python torch==2.13.0
.venv/bin/pip install --quiet -e '.[test]'
if [ -z "${SWEEPER_DATA_DIR:-}" ] && [ -d ../shared/data/obesity ]; then
  export SWEEPER_DATA_DIR="$(cd ../shared/data && pwd)"
fi
# quick.db, not the shipped results.db, so the repository's reproduction stays as committed.
.venv/bin/sweeper run studies/quick.toml --db quick.db --no-progress
