#!/usr/bin/python3
"""airbench_torch.py — the airbench94 recipe (Keller Jordan, 2024) in PyTorch,
on the images of deephash streams, as the peer of `dh-pretrain --arch air`.

It answers one question: what does the reference implementation of the
recipe reach on the same data (the shared CIFAR-10 JPEGs), the same number
of epochs and the same CPU? Our `air` net follows this recipe; when both
land at the same accuracy, the gap to airbench's published 94% is the
data's, not the implementation's.

    dh-npy export --field pixels -o train-x.npy train.dhs
    dh-npy export --field label  -o train-y.npy train.dhs
    (the same for test.dhs)
    /usr/bin/python3 tests/bench/airbench_torch.py --epochs 5 \
        train-x.npy train-y.npy test-x.npy test-y.npy

Faithful to airbench94.py: batch 1024, lr 11.5 / kilostep scale, momentum
0.85 Nesterov, weight decay 0.0153 x batch / kilostep scale, BN biases at
64x the rate, BN weights frozen at 1 (eps 1e-12, momentum 0.6), label
smoothing 0.2 with a summed loss, a frozen 2x2 patch-whitening first layer
(eps 5e-4, bias trained for 3 epochs), GELU, widths 64/256/256, max-pool 3,
linear head without bias x 1/9, lookahead every 5 steps with decay
0.95^5 (step/total)^3, warm-up from 0.2 over 23% of the steps then down to
0.07, crops from reflection padding 2, alternating flips, test-time
augmentation level 2. Differences: FP32 on the CPU (airbench: FP16 on a
GPU), input statistics of the training set itself.
"""
import argparse
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_nets import Scale  # x * f (tests/bench/torch_nets.py, beside this file)


class BatchNorm(nn.BatchNorm2d):
    def __init__(self, n, momentum, eps=1e-12):
        super().__init__(n, eps=eps, momentum=1 - momentum)
        self.weight.requires_grad = False
        self.bias.requires_grad = True


class Conv(nn.Conv2d):
    def __init__(self, cin, cout):
        super().__init__(cin, cout, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self):
        super().reset_parameters()
        w = self.weight.data
        torch.nn.init.dirac_(w[: w.size(1)])


class ConvGroup(nn.Module):
    def __init__(self, cin, cout, bn_momentum):
        super().__init__()
        self.conv1 = Conv(cin, cout)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(cout, bn_momentum)
        self.conv2 = Conv(cout, cout)
        self.norm2 = BatchNorm(cout, bn_momentum)
        self.activ = nn.GELU()

    def forward(self, x):
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


def make_net(widths=(64, 256, 256), bn_momentum=0.6):
    whiten_width = 2 * 3 * 2 * 2
    net = nn.Sequential(
        nn.Conv2d(3, whiten_width, kernel_size=2, padding=0, bias=True),
        nn.GELU(),
        ConvGroup(whiten_width, widths[0], bn_momentum),
        ConvGroup(widths[0], widths[1], bn_momentum),
        ConvGroup(widths[1], widths[2], bn_momentum),
        nn.MaxPool2d(3),
        nn.Flatten(),
        nn.Linear(widths[2], 10, bias=False),
        Scale(1 / 9),  # airbench's Mul
    )
    net[0].weight.requires_grad = False
    return net.to(memory_format=torch.channels_last)


def init_whitening(layer, x, eps=5e-4):
    c, (h, w) = x.shape[1], layer.weight.shape[2:]
    patches = x.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c, h, w).float()
    flat = patches.view(patches.shape[0], -1)
    cov = (flat.T @ flat) / flat.shape[0]
    evals, evecs = torch.linalg.eigh(cov, UPLO="U")
    evals, evecs = evals.flip(0).view(-1, 1, 1, 1), evecs.T.reshape(c * h * w, c, h, w).flip(0)
    scaled = evecs / torch.sqrt(evals + eps)
    layer.weight.data[:] = torch.cat((scaled, -scaled))


class Lookahead:
    def __init__(self, net):
        self.ema = {k: v.clone() for k, v in net.state_dict().items()}

    def update(self, net, decay):
        for e, p in zip(self.ema.values(), net.state_dict().values()):
            if p.dtype == torch.float:
                e.lerp_(p, 1 - decay)
                p.copy_(e)


def evaluate(net, x, y, tta, batch=2000):
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            b = x[i : i + batch]

            def mirror(t):
                return 0.5 * net(t) + 0.5 * net(t.flip(-1))

            if tta == 0:
                logits = net(b)
            elif tta == 1:
                logits = mirror(b)
            else:
                p = F.pad(b, (1,) * 4, "reflect")
                tr = torch.stack([mirror(p[:, :, 0:32, 0:32]), mirror(p[:, :, 2:34, 2:34])]).mean(0)
                logits = 0.5 * mirror(b) + 0.5 * tr
            correct += (logits.argmax(1) == y[i : i + batch]).sum().item()
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("train_x"), ap.add_argument("train_y"), ap.add_argument("test_x"), ap.add_argument("test_y")
    ap.add_argument("--epochs", type=float, default=9.9)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    if a.threads:
        torch.set_num_threads(a.threads)

    def load(px, lb):
        x = torch.from_numpy(np.load(px)).float().div_(255)
        y = torch.from_numpy(np.load(lb).astype(np.int64)).view(-1)
        if x.shape[1:] != (3, 32, 32) or len(x) != len(y):
            sys.exit("airbench_torch: expected (N, 3, 32, 32) pixels and N labels")
        return x, y

    xtr, ytr = load(a.train_x, a.train_y)
    xte, yte = load(a.test_x, a.test_y)
    mean, std = xtr.mean((0, 2, 3)).view(1, 3, 1, 1), xtr.std((0, 2, 3)).view(1, 3, 1, 1)
    xtr, xte = ((xtr - mean) / std).contiguous(memory_format=torch.channels_last), ((xte - mean) / std).contiguous(
        memory_format=torch.channels_last)
    padded = F.pad(xtr, (2,) * 4, "reflect")

    bs, momentum = 1024, 0.85
    kilostep = 1024 * (1 + 1 / (1 - momentum))
    lr, wd = 11.5 / kilostep, 0.0153 * bs / kilostep
    lr_bias = lr * 64.0
    spe = len(xtr) // bs
    total = math.ceil(spe * a.epochs)
    net = make_net()
    init_whitening(net[0], xtr[:5000])
    norm_b = [p for k, p in net.named_parameters() if "norm" in k and p.requires_grad]
    other = [p for k, p in net.named_parameters() if "norm" not in k and p.requires_grad]
    opt = torch.optim.SGD([dict(params=norm_b, lr=lr_bias, weight_decay=wd / lr_bias),
                           dict(params=other, lr=lr, weight_decay=wd / lr)], momentum=momentum, nesterov=True)
    warm = int(total * 0.23)

    def sched(step):
        if step < warm:
            f = step / warm
            return 0.2 * (1 - f) + f
        f = (step - warm) / (total - warm)
        return (1 - f) + 0.07 * f

    lrs = torch.optim.lr_scheduler.LambdaLR(opt, sched)
    alpha = 0.95 ** 5 * (torch.arange(total + 1) / total) ** 3
    la = Lookahead(net)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.2, reduction="none")
    flipbit = torch.rand(len(xtr)) < 0.5
    step, t0 = 0, time.time()
    for ep in range(math.ceil(a.epochs)):
        net[0].bias.requires_grad = ep < 3
        net.train()
        perm = torch.randperm(len(xtr))
        dx, dy = torch.randint(0, 5, (2, len(xtr)))
        flip = flipbit ^ bool(ep % 2)
        for s in range(spe):
            idx = perm[s * bs : (s + 1) * bs]
            b = torch.empty(len(idx), 3, 32, 32).contiguous(memory_format=torch.channels_last)
            for j, i in enumerate(idx.tolist()):
                img = padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
                b[j] = img.flip(-1) if flip[i] else img
            out = net(b)
            loss = loss_fn(out, ytr[idx]).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            lrs.step()
            step += 1
            if step % 5 == 0:
                la.update(net, decay=alpha[step].item())
            if step >= total:
                la.update(net, decay=1.0)
                break
        el = time.time() - t0
        print(f"airbench_torch: epoch {ep + 1}  loss {loss.item() / len(idx):.4f}  {step * bs / el:.0f} images/s",
              file=sys.stderr, flush=True)
        if step >= total:
            break
    train_s = time.time() - t0
    acc0, acc2 = evaluate(net, xte, yte, 0), evaluate(net, xte, yte, 2)
    print(f"airbench_torch: {a.epochs:g} epochs, {total} steps in {train_s:.1f} s ({total * bs / train_s:.0f} images/s, "
          f"{torch.get_num_threads()} threads): test accuracy {100 * acc0:.2f}%, {100 * acc2:.2f}% with "
          f"test-time augmentation level 2")


if __name__ == "__main__":
    main()
