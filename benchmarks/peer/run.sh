#!/usr/bin/env bash
# `make bench-peer`: RecBole 1.2.1 SASRec vs liveshelf sasrec on ml-100k, side by side.
#   1. build .venv-peer once (setup.sh; a stamp file makes reruns free);
#   2. train RecBole's SASRec in .venv-peer, unless a result for the same config and
#      driver is cached under .venv-peer/runs/ (PEER_FORCE=1 retrains);
#   3. train our sasrec in .venv on the same split and write benchmarks/results/peer.json.
# Extra arguments go to run_peer.py (e.g. --budget-seconds 1800);
# RECBOLE_ARGS goes to recbole_sasrec.py (e.g. RECBOLE_ARGS="--budget-seconds 3600").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/benchmarks/peer"
export HF_HUB_OFFLINE=1 PYTHONHASHSEED=0 COLUMNS="${COLUMNS:-200}"
export LIVESHELF_DATA_DIR="${LIVESHELF_DATA_DIR:-$(cd "$ROOT/.." && pwd)/shared/data}"

bash "$HERE/setup.sh"
KEY="$(cat "$HERE/sasrec_ml100k.yaml" "$HERE/recbole_sasrec.py" <(echo "${RECBOLE_ARGS:-}") | sha1sum | cut -c1-10)"
OUT="$ROOT/.venv-peer/runs/recbole_sasrec_ml100k_$KEY.json"
if [[ ! -f "$OUT" || "${PEER_FORCE:-0}" == 1 ]]; then
    # shellcheck disable=SC2086
    "$ROOT/.venv-peer/bin/python" "$HERE/recbole_sasrec.py" --out "$OUT" ${RECBOLE_ARGS:-}
else
    echo "RecBole result cached: $OUT (PEER_FORCE=1 retrains)"
fi
"$ROOT/.venv/bin/python" "$HERE/run_peer.py" --recbole "$OUT" "$@"
