"""PyTorch's side of tools/bench_train.sh: the same cases as stdlib/examples/train_bench.rs,
same shapes, batch, patch and thread count. Prints `case milliseconds` (median of ROUNDS)."""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


class Extractor(nn.Module):
    def __init__(self, cin, dim):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, dim, 7, 2, 1)
        self.conv2 = nn.Conv2d(dim, dim, 3, 2, 1)
        self.conv3 = nn.Conv2d(dim, dim, 3, 2, 1)

    def forward(self, x):
        x = F.relu(self.conv3(F.relu(self.conv2(F.relu(self.conv1(x))))))
        return x.mean(dim=(2, 3))


class SRResNet(nn.Module):
    """SRResNet at scale 1; with `prompt`, explicit task maps modulate every block, conv_hr and
    conv_last (f * (1 + s(z)) + b(z)), as mio's and the reference's."""

    def __init__(self, c, blocks, prompt=False, tasks=7, size=128, dim=64):
        super().__init__()
        self.conv_first = nn.Conv2d(3, c, 3, 1, 1)
        self.body = nn.ModuleList(
            nn.ModuleList([nn.Conv2d(c, c, 3, 1, 1), nn.Conv2d(c, c, 3, 1, 1)]) for _ in range(blocks)
        )
        self.conv_hr = nn.Conv2d(c, c, 3, 1, 1)
        self.conv_last = nn.Conv2d(c, 3, 3, 1, 1)
        self.prompt = prompt
        if prompt:
            self.register_buffer("maps", torch.rand(tasks, 1, size, size))
            self.ext = Extractor(1, dim)
            self.scale = nn.ModuleList(nn.Linear(dim, c) for _ in range(blocks + 1))
            self.shift = nn.ModuleList(nn.Linear(dim, c) for _ in range(blocks + 1))
            self.scale_out = nn.Linear(dim, 3)
            self.shift_out = nn.Linear(dim, 3)

    def forward(self, x, ids):
        z = self.ext(self.maps[ids]) if self.prompt else None

        def mod(f, s, b):
            if z is None:
                return f
            return f * (1 + s(z)[:, :, None, None]) + b(z)[:, :, None, None]

        f = F.leaky_relu(self.conv_first(x), 0.1)
        for i, (c1, c2) in enumerate(self.body):
            f = f + c2(F.relu(c1(f)))
            if z is not None:
                f = mod(f, self.scale[i], self.shift[i])
        f = F.leaky_relu(self.conv_hr(f), 0.1)
        if z is not None:
            f = mod(f, self.scale[-1], self.shift[-1])
        out = self.conv_last(f)
        if z is not None:
            out = mod(out, self.scale_out, self.shift_out)
        return out + x


def timed(rounds, f):
    f()
    ts = []
    for _ in range(rounds):
        t = time.perf_counter()
        f()
        ts.append((time.perf_counter() - t) * 1e3)
    return sorted(ts)[len(ts) // 2]


def train_step(net, rounds):
    lq, gt = torch.rand(8, 3, 48, 48), torch.rand(8, 3, 48, 48)
    ids = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0])
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.99))

    def step():
        opt.zero_grad(set_to_none=True)
        F.l1_loss(net(lq, ids), gt).backward()
        opt.step()

    return timed(rounds, step)


def infer(net, rounds):
    x = torch.rand(1, 3, 512, 512)
    ids = torch.tensor([0])

    def run():
        with torch.no_grad():
            net(x, ids)

    return timed(rounds, run)


x = torch.rand(8, 64, 64, 64, requires_grad=True)
w = torch.rand(64, 64, 3, 3, requires_grad=True)
print(f"threads {torch.get_num_threads()}")


def conv():
    F.conv2d(x, w, padding=1).sum().backward()


print(f"torch.conv3x3_fwd_bwd {timed(ROUNDS, conv):.2f}")
small = SRResNet(32, 4)
big = SRResNet(64, 16, prompt=True)
print(f"torch.srresnet32x4_step {train_step(small, ROUNDS):.2f}")
print(f"torch.srresnet32x4_infer512 {infer(small, ROUNDS):.2f}")
print(f"torch.srresnet64x16ep_step {train_step(big, min(ROUNDS, 3)):.2f}")
print(f"torch.srresnet64x16ep_infer512 {infer(big, min(ROUNDS, 3)):.2f}")
