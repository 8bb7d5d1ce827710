"""PyTorch's side of tools/bench_train.sh: the cases `mio bench` measures, with the same
shapes, batch, patch, thread count and device, through the same architectures
(tools/torch_models.py). Prints `LABEL.CASE milliseconds` lines (median of the rounds, after a
warm-up); on a GPU each round waits for the device. The label says the arithmetic:
`torch` (fp32, TF32 off in cuBLAS and cuDNN), `torch_tf32` (TF32 on in both) and `torch_amp`
(bf16 autocast with channels-last tensors, the usual fast PyTorch recipe on a GPU).

Usage: bench_train.py [--device cpu|cuda] [--rounds N] [--threads N] [--only a,b]
                      [--precision fp32|tf32|amp]
"""
import argparse
import time

import torch
import torch.nn.functional as F

from torch_models import PromptIR, Restormer, SRResNet, SwinIR, Uformer

ap = argparse.ArgumentParser()
ap.add_argument("--device", default="cpu")
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--budget", type=float, default=30.0, help="seconds after which a case stops adding rounds")
ap.add_argument("--only", default="", help="comma-separated case names")
ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "amp"])
args = ap.parse_args()
dev = torch.device(args.device)
gpu = dev.type == "cuda"
tf32 = args.precision != "fp32"
torch.backends.cuda.matmul.allow_tf32 = tf32
torch.backends.cudnn.allow_tf32 = tf32
amp = args.precision == "amp"
label = {"fp32": "torch", "tf32": "torch_tf32", "amp": "torch_amp"}[args.precision]
fmt = torch.channels_last if amp else torch.contiguous_format


def autocast():
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp)
torch.set_num_threads(args.threads)
only = [o for o in args.only.split(",") if o]
wanted = lambda name: not only or name in only


def sync():
    if gpu:
        torch.cuda.synchronize()


def timed(f):
    f()
    sync()
    start, ts = time.perf_counter(), []
    for _ in range(max(args.rounds, 1)):
        t = time.perf_counter()
        f()
        sync()
        ts.append((time.perf_counter() - t) * 1e3)
        if time.perf_counter() - start > args.budget:
            break
    return sorted(ts)[len(ts) // 2]


class Prompted(torch.nn.Module):
    """A network and the fixed task maps its explicit prompts read, one per image (as the
    reference feeds them), or none."""

    def __init__(self, net, explicit):
        super().__init__()
        self.net = net
        if explicit:
            self.register_buffer("maps", torch.rand(7, 1, 128, 128))
        else:
            self.maps = None

    def forward(self, x, ids):
        if self.maps is None:
            return self.net(x)
        return self.net(x, self.maps[ids])


def train_step(net, batch, patch):
    lq = torch.rand(batch, 3, patch, patch, device=dev).to(memory_format=fmt)
    gt = torch.rand(batch, 3, patch, patch, device=dev).to(memory_format=fmt)
    ids = torch.arange(batch, device=dev) % 7
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.99))

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = F.l1_loss(net(lq, ids), gt)
        loss.backward()
        opt.step()

    return timed(step)


def infer(net):
    x = torch.rand(1, 3, 512, 512, device=dev).to(memory_format=fmt)
    ids = torch.zeros(1, dtype=torch.long, device=dev)

    def run():
        with torch.no_grad(), autocast():
            net(x, ids)

    return timed(run)


print(f"threads {torch.get_num_threads()} device {dev} precision {args.precision}")
if wanted("gemm"):
    a, b = torch.rand(1024, 1024, device=dev), torch.rand(1024, 1024, device=dev)
    ms = timed(lambda: a @ b)
    print(f"{label}.gemm1024_gflops {2 * 1024 ** 3 / (ms * 1e-3) / 1e9:.2f}")
if not gpu and not amp and wanted("kernels"):
    x = torch.rand(8, 64, 64, 64, requires_grad=True)
    w = torch.rand(64, 64, 3, 3, requires_grad=True)
    print(f"torch.conv3x3_fwd_bwd {timed(lambda: F.conv2d(x, w, padding=1).sum().backward()):.2f}")
    dx = torch.rand(8, 144, 64, 64, requires_grad=True)
    dw = torch.rand(144, 1, 3, 3, requires_grad=True)
    dwconv = lambda: F.conv2d(dx, dw, padding=1, groups=144).sum().backward()
    print(f"torch.dwconv3x3_fwd_bwd {timed(dwconv):.2f}")
    # LeFF's depthwise convolution as the reference runs it: tokens to channels-first and back.
    tx = torch.rand(8, 64, 64, 128, requires_grad=True)
    tw = torch.rand(128, 1, 3, 3, requires_grad=True)
    tb = torch.rand(128, requires_grad=True)
    tokens = lambda: F.conv2d(tx.permute(0, 3, 1, 2), tw, tb, padding=1, groups=128).permute(0, 2, 3, 1).sum().backward()
    print(f"torch.dwtokens3x3_fwd_bwd {timed(tokens):.2f}")

# The networks of `mio bench` (src/bench.rs standard_cases): name, builder, batch, patch.
if gpu:
    cases = [
        ("srresnet32x4", lambda: Prompted(SRResNet(32, 4), False), 16, 128),
        ("srresnet64x16ep", lambda: Prompted(SRResNet(64, 16, prompt_in=1), True), 16, 128),
        ("restormer_ep", lambda: Prompted(Restormer(prompt_in=1), True), 8, 128),
        ("swinir_small", lambda: Prompted(SwinIR(60, (6, 6, 6, 6), 6, 8, 2.0), False), 8, 128),
    ]
else:
    cases = [
        ("srresnet32x4", lambda: Prompted(SRResNet(32, 4), False), 8, 48),
        ("srresnet64x16ep", lambda: Prompted(SRResNet(64, 16, prompt_in=1), True), 8, 48),
        ("restormer16", lambda: Prompted(Restormer(16, (2, 2, 2, 2), 2, (1, 2, 4, 8)), False), 8, 48),
        ("swinir60", lambda: Prompted(SwinIR(60, (2, 2, 2, 2), 6, 8, 2.0), False), 8, 48),
        ("uformer16", lambda: Prompted(Uformer(16, (1, 2, 2, 2, 2, 2, 2, 2, 1), ws=4), False), 8, 64),
        ("promptir16", lambda: Prompted(PromptIR(16, (2, 2, 2, 2), 2, (1, 2, 4, 8)), False), 8, 48),
    ]
for name, build, batch, patch in cases:
    if not wanted(name):
        continue
    net = build().to(dev).to(memory_format=fmt)
    print(f"{label}.{name}_step {train_step(net, batch, patch):.2f}", flush=True)
    print(f"{label}.{name}_infer512 {infer(net):.2f}", flush=True)
