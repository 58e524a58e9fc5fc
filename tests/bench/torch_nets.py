#!/usr/bin/env python3
"""torch_nets.py — the built-in deephash nets (formats/netspec/netspec.c:
lenet, cifar, fast, air) in PyTorch, timed the way tests/bench/bench_nets.c
times ours: the same synthetic u8 images and labels, batch size and thread
count; a training step gathers a shuffled batch, normalises it, runs
forward, cross-entropy, backward and SGD (momentum 0.9, Nesterov, weight
decay 5e-4 on every parameter); inference normalises and runs forward in
eval mode without gradients. Prints one line:

    TORCH <net> params <count> train <img/s> infer <img/s>

bench_nets checks that the parameter count equals ours.

    torch_nets.py --net fast --batch 512 --threads 2 --seconds 15 [--bf16]

--bf16: PyTorch's fastest CPU configuration, bf16 autocast with
channels-last tensors (oneDNN's brgconv / avx512_core_bf16 kernels).
"""
import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn as nn


class Res(nn.Module):
    """res ... end: y = body(x) + x"""

    def __init__(self, *body):
        super().__init__()
        self.body = nn.Sequential(*body)

    def forward(self, x):
        return self.body(x) + x


class Scale(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return x * self.f


def conv_bn_relu(cin, cout, pool=False):
    layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return layers + [nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def make(name):
    """(body, input C/H/W, z dim): the same layers, in the same order, as netspec.c."""
    if name == "lenet":
        body = nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2, 2), nn.ReLU(), nn.Conv2d(20, 50, 5),
                             nn.MaxPool2d(2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(800, 500), nn.ReLU())
        return body, (1, 28, 28), 500
    if name == "cifar":
        body = nn.Sequential(nn.Conv2d(3, 32, 5, padding=2), nn.MaxPool2d(3, 2, padding=1), nn.ReLU(),
                             nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, padding=1),
                             nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, padding=1), nn.Flatten(),
                             nn.Linear(1024, 1024), nn.ReLU())
        return body, (3, 32, 32), 1024
    if name == "fast":
        body = nn.Sequential(*conv_bn_relu(3, 64), *conv_bn_relu(64, 128, pool=True),
                             Res(*conv_bn_relu(128, 128), *conv_bn_relu(128, 128)), *conv_bn_relu(128, 256, pool=True),
                             *conv_bn_relu(256, 512, pool=True), Res(*conv_bn_relu(512, 512), *conv_bn_relu(512, 512)),
                             nn.MaxPool2d(4), nn.Flatten(), Scale(0.125))
        return body, (3, 32, 32), 512
    if name == "air":
        def group(cin, cout, pool):
            layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
            if pool:
                layers.append(nn.MaxPool2d(2))
            return layers + [nn.BatchNorm2d(cout), nn.GELU()]
        # the first layer: patch whitening (ours sets its filters from the data; trained alike here)
        body = nn.Sequential(nn.Conv2d(3, 24, 2), nn.GELU(), *group(24, 64, True), *group(64, 64, False),
                             *group(64, 256, True), *group(256, 256, False), *group(256, 256, True),
                             *group(256, 256, False), nn.MaxPool2d(3), nn.Flatten(), Scale(0.1111))
        return body, (3, 32, 32), 256
    raise SystemExit("unknown net " + name)


NIMG = 4096


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--bf16", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    body, (C, H, W), z = make(a.net)
    model = nn.Sequential(body, nn.Linear(z, 10))
    nparams = sum(p.numel() for p in model.parameters())
    # the synthetic images of bench_nets.c: pixel i = (i * 2654435761 mod 2^32) >> 13, low 8 bits
    i = np.arange(NIMG * C * H * W, dtype=np.uint64)
    img = torch.from_numpy((((i * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)) >> np.uint64(13)).astype(np.uint8))
    img = img.reshape(NIMG, C, H, W)
    lab = torch.arange(NIMG) % 10
    fmt = torch.channels_last if a.bf16 else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    lossf = nn.CrossEntropyLoss()
    B = a.batch
    g = torch.Generator().manual_seed(7)

    def batch(it, perm):
        off = (it * B) % (NIMG - B + 1)
        idx = perm[off:off + B]
        x = (img[idx].float() / 255.0 - 0.5) / 0.25
        return x.contiguous(memory_format=fmt), lab[idx]

    rates = {}
    for train in (True, False):
        model.train(train)
        steps, t0, it, dt = 0, 0.0, 0, []
        perm = torch.randperm(NIMG, generator=g)
        while True:
            if it == 2:
                t0 = time.perf_counter()
            ts = time.perf_counter()
            if it % (NIMG // B) == 0:
                perm = torch.randperm(NIMG, generator=g)
            x, y = batch(it, perm)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                if train:
                    opt.zero_grad(set_to_none=True)
                    loss = lossf(model(x), y)
                    loss.backward()
                    opt.step()
                else:
                    with torch.no_grad():
                        loss = lossf(model(x), y)
            now = time.perf_counter()
            if it >= 2:
                steps += 1
                dt.append(now - ts)
            it += 1
            if steps >= 3 and now - t0 >= a.seconds:
                break
        # the batch over the median step's time, as bench_nets.c
        rates[train] = B / statistics.median(dt)
    print("TORCH %s params %d train %.1f infer %.1f" % (a.net, nparams, rates[True], rates[False]), flush=True)


if __name__ == "__main__":
    main()
