#!/usr/bin/python3
"""The reference U-Net of issue 3 in PyTorch on the CPU: segtool's peer in `make bench`.

Same network as segtool's seg.UNet (base width 16, depth 4: 16-32-64-128-256; two 3x3 conv +
ReLU per block, with or without batch norm; 2x2 max-pool; nearest x2 upsample; the upsampled
features concatenated before the skip; 1x1 head), the same parameter names, softmax
cross-entropy and Adam.

    unet_torch.py bench  --norm none --batch 8 --size 128 --threads 2   one JSON line of timings
    unet_torch.py parity DIR...      for each DIR: model.safetensors + data.safetensors -> torch.safetensors

Runs on Debian's python3-torch (1.13), which has no safetensors module: the files are read
and written here with json and numpy.
"""
import argparse
import json
import resource
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    """(3x3 conv -> [batch norm] -> ReLU) twice: conv1, norm1, conv2, norm2."""

    def __init__(self, cin, cout, norm):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm1 = nn.BatchNorm2d(cout) if norm else None
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm2 = nn.BatchNorm2d(cout) if norm else None

    def forward(self, x):
        x = self.conv1(x)
        if self.norm1 is not None:
            x = self.norm1(x)
        x = F.relu(x, inplace=True)
        x = self.conv2(x)
        if self.norm2 is not None:
            x = self.norm2(x)
        return F.relu(x, inplace=True)


class UNet(nn.Module):
    """encoder.inc, encoder.down1..D, decoder.up1 (deepest)..upD, head: segtool's names."""

    def __init__(self, cin=3, base=16, depth=4, classes=4, norm=False):
        super().__init__()
        ch = [base << i for i in range(depth + 1)]
        self.encoder = nn.Module()
        self.encoder.inc = Block(cin, ch[0], norm)
        for i in range(1, depth + 1):
            setattr(self.encoder, f"down{i}", Block(ch[i - 1], ch[i], norm))
        self.decoder = nn.Module()
        for j, i in enumerate(range(depth - 1, -1, -1)):
            setattr(self.decoder, f"up{j + 1}", Block(ch[i + 1] + ch[i], ch[i], norm))
        self.head = nn.Conv2d(base, classes, 1)
        self.depth = depth

    def forward(self, x):
        x = self.encoder.inc(x)
        skips = []
        for i in range(1, self.depth + 1):
            skips.append(x)
            x = getattr(self.encoder, f"down{i}")(F.max_pool2d(x, 2))
        for j in range(self.depth):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = torch.cat([x, skips[-1 - j]], 1)
            x = getattr(self.decoder, f"up{j + 1}")(x)
        return self.head(x)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def bench(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    model = UNet(base=a.base, depth=a.depth, classes=a.classes, norm=a.norm == "batch")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(a.batch, 3, a.size, a.size)
    y = torch.randint(0, a.classes, (a.batch, a.size, a.size))

    model.train()
    train, losses = [], []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        losses.append(loss.item())
        if i >= a.warmup:
            train.append(dt * 1e3)

    model.eval()
    infer = []
    with torch.no_grad():
        for i in range(a.warmup + a.steps):
            t0 = time.perf_counter()
            out = model(x)
            dt = time.perf_counter() - t0
            if i >= a.warmup:
                infer.append(dt * 1e3)
    del out

    print(json.dumps({
        "impl": "pytorch " + torch.__version__,
        "norm": a.norm, "batch": a.batch, "size": a.size, "threads": torch.get_num_threads(),
        "train_ms": statistics.median(train), "train_ms_min": min(train),
        "infer_ms": statistics.median(infer), "infer_ms_min": min(infer),
        "peak_rss_mb": peak_rss_mb(),
        "loss_first": losses[0], "loss_last": losses[-1],
        "params": sum(p.numel() for p in model.parameters()),
    }))


# --- safetensors with json + numpy --------------------------------------------------------

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, e in header.items():
        lo, hi = e["data_offsets"]
        a = np.frombuffer(blob[base + lo:base + hi], dtype=np.dtype(DTYPES[e["dtype"]]).newbyteorder("<"))
        out[name] = a.reshape(e["shape"]).copy()
    return out, meta


def write_safetensors(path, tensors, meta=None):
    header, chunks, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in chunks:
            f.write(b)


def parity(a):
    torch.set_num_threads(a.threads)
    for d in a.dirs:
        parity_one(f"{d}/model.safetensors", f"{d}/data.safetensors", f"{d}/torch.safetensors")


def parity_one(model_path, data_path, out_path):
    """Loads segtool's weights, runs the same inputs, writes logits, loss and gradients."""
    weights, meta = read_safetensors(model_path)
    data, _ = read_safetensors(data_path)
    cfg = json.loads(meta["segtool.config"]) if "segtool.config" in meta else {}
    norm = any(k.endswith("running_mean") for k in weights)
    model = UNet(cin=int(data["x"].shape[1]), base=cfg.get("base", 16), depth=cfg.get("depth", 4),
                 classes=int(weights["head.bias"].shape[0]), norm=norm)
    state = model.state_dict()
    missing = [k for k in state if k not in weights and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in weights if k not in state]
    if missing or unexpected:
        sys.exit(f"parity: names differ: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in weights.items()}, strict=False)
    x = torch.from_numpy(data["x"].astype(np.float32))
    labels = torch.from_numpy(data["labels"].astype(np.int64))
    out = {}
    model.eval()
    with torch.no_grad():
        out["logits_eval"] = model(x).numpy()
    model.train()
    logits = model(x)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    out["logits_train"] = logits.detach().numpy()
    out["loss"] = np.array([loss.item()], dtype=np.float32)
    for name, p in model.named_parameters():
        out["grad." + name] = p.grad.numpy()
    for name, b in model.named_buffers():
        if not name.endswith("num_batches_tracked"):
            out["after." + name] = b.numpy()
    write_safetensors(out_path, out, {"impl": "pytorch " + torch.__version__})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--norm", choices=["none", "batch"], default="none")
    b.add_argument("--batch", type=int, default=8)
    b.add_argument("--size", type=int, default=128)
    b.add_argument("--base", type=int, default=16)
    b.add_argument("--depth", type=int, default=4)
    b.add_argument("--classes", type=int, default=4)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--steps", type=int, default=20)
    b.add_argument("--warmup", type=int, default=3)
    q = sub.add_parser("parity")
    q.add_argument("dirs", nargs="+")
    q.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    if a.cmd == "bench":
        bench(a)
    else:
        parity(a)


if __name__ == "__main__":
    main()
