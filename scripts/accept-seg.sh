#!/usr/bin/env bash
# Acceptance for the segmenter (issue 4), on the real data in ../shared/data:
#  - membrane: from scratch vs from an auto-encoder pre-trained on the training slices;
#  - CamVid: segtool vs the PyTorch reference (bench/seg_reference.py) for the same epochs,
#    from scratch vs from an auto-encoder pre-trained on the training images, and the
#    better recipe (configs/seg-camvid-plus.yaml).
# EPOCHS (default 30, the calibration of the issue) sets the CamVid epochs of every run;
# WHICH=membrane|camvid|all. Writes runs/accept-seg-*/ and prints a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-30}
WHICH=${WHICH:-all}
data=../shared/data
[ -d "$data/camvid" ] || { echo "skip: $data/camvid not found"; exit 0; }
bin=bin/segtool
best() { python3 -c 'import json,sys; print(max(json.loads(l).get(sys.argv[2],0) for l in open(sys.argv[1])))' "$1" "$2"; }

if [ "$WHICH" = membrane ] || [ "$WHICH" = all ]; then
  $bin train -c configs/seg-membrane.yaml --out runs/accept-seg-membrane-scratch --force -q
  $bin train -c configs/ae-membrane.yaml --out runs/accept-ae-membrane --force -q
  $bin train -c configs/seg-membrane.yaml --out runs/accept-seg-membrane-ae --force -q \
    --init-encoder runs/accept-ae-membrane/best.safetensors
  echo "membrane best val mIoU: scratch $(best runs/accept-seg-membrane-scratch/metrics.jsonl val_miou)," \
       "from AE $(best runs/accept-seg-membrane-ae/metrics.jsonl val_miou)"
fi
if [ "$WHICH" = camvid ] || [ "$WHICH" = all ]; then
  $bin train -c configs/seg-camvid.yaml --epochs "$EPOCHS" --out runs/accept-seg-camvid-scratch --force -q
  /usr/bin/python3 bench/seg_reference.py --data "$data/camvid" --epochs "$EPOCHS" --out runs/accept-seg-camvid-torch.jsonl
  $bin train -c configs/ae-camvid.yaml --epochs "$EPOCHS" --out runs/accept-ae-camvid --force -q
  $bin train -c configs/seg-camvid.yaml --epochs "$EPOCHS" --out runs/accept-seg-camvid-ae --force -q \
    --init-encoder runs/accept-ae-camvid/best.safetensors
  $bin train -c configs/seg-camvid-plus.yaml --epochs "$EPOCHS" --out runs/accept-seg-camvid-plus --force -q
  echo "CamVid val mIoU after $EPOCHS epochs: last epoch (best epoch; mean of the last 5)"
  summary() { python3 -c 'import json,sys; v=[json.loads(l)["val_miou"] for l in open(sys.argv[1])]; print("%.4f (%.4f; %.4f)" % (v[-1], max(v), sum(v[-5:])/len(v[-5:])))' "$1"; }
  echo "  segtool, configs/seg-camvid.yaml:              $(summary runs/accept-seg-camvid-scratch/metrics.jsonl)"
  echo "  pytorch, bench/seg_reference.py (same recipe): $(summary runs/accept-seg-camvid-torch.jsonl)"
  echo "  segtool, from the auto-encoder's encoder:      $(summary runs/accept-seg-camvid-ae/metrics.jsonl)"
  echo "  segtool, configs/seg-camvid-plus.yaml:         $(summary runs/accept-seg-camvid-plus/metrics.jsonl)"
fi
