#!/usr/bin/python3
"""The Python peer of `segtool predict` on video, for side-by-side speed.

It does the same job the same way: OpenCV reads the frames, each is resized
to the model's input size (INTER_AREA) and scaled to [0,1] RGB, PyTorch runs
the same U-Net (weights loaded from the segtool .safetensors file) in
batches, the logits are resized bilinearly (align_corners=False) to the
frame's size, the argmax is painted over the frame with --alpha, and OpenCV
writes the video (mp4v for .mp4, MJPG for .avi). It prints one JSON line
with the frame count, seconds and frames/s.

    /usr/bin/python3 bench/predict_peer.py predict --model M.safetensors \\
        --input in.avi --out peer.avi [--batch 4] [--threads 2] [--masks DIR]
    /usr/bin/python3 bench/predict_peer.py make-video --out camvid.avi \\
        --frames ../shared/data/camvid/train ../shared/data/camvid/val --prefix 0016E5

make-video assembles the PNG frames of one CamVid sequence (by file-name
prefix, in name order) into an MJPG video, the 480x360 input of the
benchmark. Needs Debian's python3-opencv and python3-torch.
"""

import argparse
import glob
import json
import os
import struct
import sys
import time

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_safetensors(path):
    """Tensors (numpy) and metadata of a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    dtypes = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}
    tensors = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        tensors[name] = np.frombuffer(data[a:b], dtype=dtypes[t["dtype"]]).reshape(t["shape"])
    return tensors, meta


class Block(nn.Module):
    """(3x3 conv -> batch norm -> ReLU) twice, as nn.ConvBlock."""

    def __init__(self, cin, cout, norm):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm = norm
        if norm:
            self.norm1 = nn.BatchNorm2d(cout)
            self.norm2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = self.conv1(x)
        if self.norm:
            x = self.norm1(x)
        x = F.relu(x)
        x = self.conv2(x)
        if self.norm:
            x = self.norm2(x)
        return F.relu(x)


class UNet(nn.Module):
    """seg.UNet: encoder.inc, encoder.down1..D (2x2 max-pool first),
    decoder.up1..D (x2 nearest upsample, concat [up, skip]), head 1x1."""

    def __init__(self, cin, base, depth, classes, norm):
        super().__init__()
        ch = [base << i for i in range(depth + 1)]
        self.encoder = nn.Module()
        self.encoder.inc = Block(cin, ch[0], norm)
        for i in range(1, depth + 1):
            setattr(self.encoder, f"down{i}", Block(ch[i - 1], ch[i], norm))
        self.decoder = nn.Module()
        for j, i in enumerate(range(depth - 1, -1, -1), start=1):
            setattr(self.decoder, f"up{j}", Block(ch[i + 1] + ch[i], ch[i], norm))
        self.head = nn.Conv2d(base, classes, 1)
        self.depth = depth

    def forward(self, x):
        skips = []
        x = self.encoder.inc(x)
        for i in range(1, self.depth + 1):
            skips.append(x)
            x = getattr(self.encoder, f"down{i}")(F.max_pool2d(x, 2))
        for j in range(1, self.depth + 1):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = torch.cat([x, skips[-j]], 1)
            x = getattr(self.decoder, f"up{j}")(x)
        return self.head(x)


def load_model(path):
    tensors, meta = read_safetensors(path)
    cfg = json.loads(meta["segtool.config"])
    norm = cfg.get("norm", "batch") == "batch"
    net = UNet(cfg["in_channels"], cfg["base"], cfg["depth"], cfg["classes"], norm)
    state = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        sys.exit(f"{path}: weights do not match the U-Net: missing {missing[:5]}, unexpected {unexpected[:5]}")
    net.eval()
    return net, cfg


def predict(args):
    torch.set_num_threads(args.threads)
    net, cfg = load_model(args.model)
    h, w, k = cfg["height"], cfg["width"], cfg["classes"]
    colors = np.array([c["color"][::-1] for c in cfg["class_table"]], dtype=np.float32)  # BGR
    ignore = cfg.get("ignore_index", -1)
    cap = cv2.VideoCapture(args.input, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        sys.exit(f"{args.input}: cannot open")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25
    fw, fh = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fourcc = args.codec or ("mp4v" if args.out.endswith(".mp4") else "MJPG")
    out = cv2.VideoWriter(args.out, cv2.VideoWriter_fourcc(*fourcc), fps, (fw, fh))
    if not out.isOpened():
        sys.exit(f"{args.out}: cannot write {fourcc}")
    if args.masks:
        os.makedirs(args.masks, exist_ok=True)
    a = args.alpha
    n = 0
    infer_s = 0.0
    start = time.perf_counter()

    def flush(frames):
        nonlocal n, infer_s
        x = np.stack([
            cv2.cvtColor(cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB).transpose(2, 0, 1)
            for f in frames]).astype(np.float32) / 255
        t = time.perf_counter()
        with torch.no_grad():
            logits = net(torch.from_numpy(x))
            logits = F.interpolate(logits, size=(fh, fw), mode="bilinear", align_corners=False)
            labels = logits.argmax(1).numpy()
        infer_s += time.perf_counter() - t
        for f, lab in zip(frames, labels):
            col = colors[np.clip(lab, 0, k - 1)]
            o = f.astype(np.float32) * (1 - a) + col * a
            if 0 <= ignore < 256:
                keep = (lab == ignore) | (lab >= k)
                o[keep] = f[keep]
            out.write(np.clip(o + 0.5, 0, 255).astype(np.uint8))
            if args.masks:
                cv2.imwrite(os.path.join(args.masks, f"{n:06d}.png"), lab.astype(np.uint8))
            n += 1

    batch = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        batch.append(frame)
        if len(batch) == args.batch:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    out.release()
    secs = time.perf_counter() - start
    print(json.dumps({"peer": "python3 " + ".".join(map(str, sys.version_info[:3])) + f" torch {torch.__version__} opencv {cv2.__version__}",
                      "threads": args.threads, "batch": args.batch, "frames": n, "size": f"{fw}x{fh}",
                      "seconds": round(secs, 3), "fps": round(n / secs, 3), "inference_seconds": round(infer_s, 3)}))


def make_video(args):
    paths = []
    for d in args.frames:
        paths += glob.glob(os.path.join(d, args.prefix + "*.png"))
    paths.sort(key=os.path.basename)
    if not paths:
        sys.exit(f"no {args.prefix}*.png frames in {args.frames}")
    first = cv2.imread(paths[0])
    fh, fw = first.shape[:2]
    out = cv2.VideoWriter(args.out, cv2.VideoWriter_fourcc(*"MJPG"), args.fps, (fw, fh))
    for p in paths:
        f = cv2.imread(p)
        if f.shape[:2] != (fh, fw):
            f = cv2.resize(f, (fw, fh))
        out.write(f)
    out.release()
    print(json.dumps({"video": args.out, "frames": len(paths), "size": f"{fw}x{fh}", "fps": args.fps}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("predict")
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--codec", default="")
    p.add_argument("--masks", default="")
    m = sub.add_parser("make-video")
    m.add_argument("--frames", nargs="+", required=True)
    m.add_argument("--prefix", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--fps", type=float, default=10)
    args = ap.parse_args()
    {"predict": predict, "make-video": make_video}[args.cmd](args)


if __name__ == "__main__":
    main()
