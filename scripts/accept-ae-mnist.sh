#!/usr/bin/env bash
# Acceptance: the MNIST auto-encoder (16-value code, configs/ae-mnist.yaml)
# must reconstruct the test digits better than PCA with 16 components fitted
# on the same training digits. About 9 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${RUN:-runs/accept-ae-mnist}
bin/segtool train --config configs/ae-mnist.yaml --out "$run" --force
bin/segtool eval --model "$run/best.safetensors" --data mnist:test
bin/segtool eval --model "$run/best.safetensors" --data mnist:test --json > "$run/eval.json"
python3 - "$run/eval.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ae, pca = r["metrics"]["mse"], r["pca"]["mse"]
print(f"test MSE: auto-encoder {ae:.5f}, PCA-{r['pca']['components']} {pca:.5f}")
sys.exit(0 if ae < pca else "FAIL: the auto-encoder does not beat PCA")
PY
