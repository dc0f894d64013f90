#!/usr/bin/python3
"""The PyTorch reference trainer for segmentation (issue 4): the same U-Net as segtool's (from
unet_torch.py), the recipe of configs/seg-camvid.yaml, scored the way segtool scores.

    bench/seg_reference.py --data ../shared/data/camvid --epochs 30 --out runs/torch-camvid.jsonl

Recipe: base width 16, depth 4, batch norm; images resized to 256x192 (area), masks nearest;
random horizontal flips; Adam lr 1e-3, batch 8; cross-entropy with the void label 11 ignored;
validation logits resized bilinearly (align_corners=False) to the masks' full 480x360 and scored
with one confusion matrix over the whole split: IoU per class, mIoU over the classes present in
truth or prediction, pixel accuracy. One JSON line per epoch.

Needs Debian's python3-torch and python3-opencv (`apt-get install python3-torch python3-opencv`),
run with /usr/bin/python3 and 2 threads to match segtool on these machines.
"""
import argparse
import glob
import json
import os
import sys
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet_torch import UNet  # noqa: E402


def load_split(root, split, size):
    w, h = size
    imgs, masks, full = [], [], []
    for path in sorted(glob.glob(os.path.join(root, split, "*.png"))):
        name = os.path.basename(path)
        img = cv2.imread(path, cv2.IMREAD_COLOR)[:, :, ::-1]  # RGB like segtool
        mask = cv2.imread(os.path.join(root, split + "annot", name), cv2.IMREAD_GRAYSCALE)
        imgs.append(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
        masks.append(cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST_EXACT))
        full.append(mask)
    x = torch.from_numpy(np.stack(imgs).transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    y = torch.from_numpy(np.stack(masks).astype(np.int64))
    return x, y, full


def evaluate(model, x, full, classes, ignore):
    model.eval()
    cm = np.zeros((classes, classes), np.int64)
    with torch.no_grad():
        for i in range(0, len(x), 8):
            logits = model(x[i:i + 8])
            for j in range(logits.shape[0]):
                truth = full[i + j]
                up = F.interpolate(logits[j:j + 1], size=truth.shape, mode="bilinear", align_corners=False)
                pred = up.argmax(1)[0].numpy()
                keep = truth != ignore
                cm += np.bincount(truth[keep].astype(np.int64) * classes + pred[keep], minlength=classes * classes).reshape(classes, classes)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1) - tp
    present = denom > 0
    iou = np.where(present, tp / np.maximum(denom, 1), -1.0)
    return {"miou": float(iou[present].mean()), "pixel_accuracy": float(tp.sum() / cm.sum()),
            "iou": [round(float(v), 4) for v in iou]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="../shared/data/camvid")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--height", type=int, default=192)
    p.add_argument("--classes", type=int, default=11)
    p.add_argument("--ignore", type=int, default=11)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    xt, yt, _ = load_split(a.data, "train", (a.width, a.height))
    xv, _, fullv = load_split(a.data, "val", (a.width, a.height))
    model = UNet(cin=3, base=16, depth=4, classes=a.classes, norm=True)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    out = open(a.out, "w") if a.out else None
    for epoch in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = rng.permutation(len(xt))
        total = 0.0
        steps = len(xt) // a.batch
        for s in range(steps):
            idx = perm[s * a.batch:(s + 1) * a.batch]
            x, y = xt[idx].clone(), yt[idx].clone()
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            x[flip] = x[flip].flip(-1)
            y[flip] = y[flip].flip(-1)
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y, ignore_index=a.ignore)
            loss.backward()
            opt.step()
            total += loss.item()
        train_s = time.perf_counter() - t0
        m = evaluate(model, xv, fullv, a.classes, a.ignore)
        line = {"epoch": epoch, "train_loss": total / steps, "train_seconds": round(train_s, 2),
                "val_miou": m["miou"], "val_pixel_accuracy": m["pixel_accuracy"], "val_iou": m["iou"]}
        print(json.dumps(line), flush=True)
        if out:
            out.write(json.dumps(line) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
