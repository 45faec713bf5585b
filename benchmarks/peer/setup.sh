#!/usr/bin/env bash
# Build .venv-peer: a separate virtualenv holding RecBole 1.2.1 and the old pins it needs.
# Idempotent: a stamp file records a finished install; a second run does nothing.
# Only PyPI through pip; torch is pinned to the 2.13.0 CPU wheel that lies on disk.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${PEER_VENV:-$ROOT/.venv-peer}"
PY="${PY:-python3}"
STAMP="$VENV/.peer-installed"
PINS=(recbole==1.2.1 torch==2.13.0 numpy==1.26.4 "pandas<2.3" "scipy<1.14" "pyarrow<18" "ray[tune]" rich)
WANT="${PINS[*]}"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    echo "peer venv ready: $VENV"
    exit 0
fi
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -c "$ROOT/constraints.txt" "${PINS[@]}"
"$VENV/bin/python" - <<'PY'
import torch, recbole, numpy
assert torch.__version__.startswith("2.13.0"), torch.__version__
print("recbole", recbole.__version__, "torch", torch.__version__, "numpy", numpy.__version__)
PY
echo "$WANT" > "$STAMP"
echo "peer venv ready: $VENV"
