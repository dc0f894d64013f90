#!/usr/bin/env bash
# Acceptance: the MNIST VAE (20-d latent, configs/vae-mnist.yaml) must reach a
# test negative ELBO of at most 100 nats per image, trained within 15 minutes
# on 2 cores. The training time is checked as CPU time (at most 2 x 15
# minutes), which does not depend on what else the machine runs; the wall
# time is reported beside it. Also writes the sample, interpolation and
# traversal grids to look at, and the same for the MNIST auto-encoder of
# accept-ae-mnist.sh when its run is there. About 15 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${RUN:-runs/accept-vae-mnist}
seg=bin/segtool
mkdir -p "$run"
TIMEFORMAT='%R %U %S'
{ time $seg train --config configs/vae-mnist.yaml --out "$run" --force -q 2>&3; } 3>&2 2>"$run/time.txt"
read -r wall user sys <"$run/time.txt"
model="$run/best.safetensors"
$seg eval --model "$model" --data mnist:test
$seg eval --model "$model" --data mnist:test --json >"$run/eval.json"
$seg sample --model "$model" --n 64 --seed 1 --out "$run/samples.png"
$seg interpolate --model "$model" --from mnist:test@3 --to mnist:test@2 --steps 10 --out "$run/interpolation.png"
$seg traverse --model "$model" --dims 8 --out "$run/traversal.png"
$seg encode --model "$model" --input mnist:test --out "$run/codes.safetensors"
ae=${AE_RUN:-runs/accept-ae-mnist}/best.safetensors
if [ -f "$ae" ]; then
	$seg sample --model "$ae" --n 64 --seed 1 --out "$run/ae-samples.png"
	$seg interpolate --model "$ae" --from mnist:test@3 --to mnist:test@2 --steps 10 --out "$run/ae-interpolation.png"
fi
python3 - "$run/eval.json" "$wall" "$user" "$sys" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["metrics"]
wall, cpu = float(sys.argv[2]), float(sys.argv[3]) + float(sys.argv[4])
print(f"test negative ELBO {r['neg_elbo']:.2f} nats per image = reconstruction {r['recon']:.2f} + KL {r['kl']:.2f}"
      f" (MSE {r['mse']:.5f}, PSNR {r['psnr']:.2f} dB)")
print(f"training: {wall/60:.1f} minutes wall, {cpu/60:.1f} CPU-minutes (budget 2 cores x 15 minutes = 30)")
fail = []
if r["neg_elbo"] > 100:
    fail.append(f"negative ELBO {r['neg_elbo']:.2f} > 100 nats")
if cpu > 2 * 15 * 60:
    fail.append(f"training took {cpu/60:.1f} CPU-minutes > 30")
sys.exit("FAIL: " + "; ".join(fail) if fail else 0)
PY
