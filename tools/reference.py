"""Reference values for mio's stdlib tests, from the tools the field uses.

Writes under stdlib/tests/data/:
  metrics/*.png + metrics.json   image pairs and scikit-image PSNR/SSIM (RGB and Y, crop 0 and 4)
  bicubic/*.png                  crops and PyTorch bicubic x1/4 down, then up (each re-quantised);
                                 PIL's antialiased bicubic x1/4 (the MATLAB-style option)
  jpeg.json                      libjpeg (OpenCV) file sizes and PSNR at several qualities
  srresnet/*.safetensors         small SRResNets (plain, EP, AP) written in PyTorch from MIOIR.md,
                                 with the reference's parameter names, an input and the output
  swinir/*.safetensors           a small SwinIR from BasicSR's own swinir_arch.py (PyPI `basicsr`),
                                 its weights, an input and the output; and small prompted ones
                                 (MiOIR's SwinIR_EP/_AP: BasicSR's body with the prompt branch
                                 written here from MiOIR's code)
  restormer/*.safetensors        small Restormers (plain, EP, AP) written in PyTorch from the
                                 Restormer paper and MiOIR's Restormer_EP/_AP, with their
                                 parameter names; and the reference configuration's parameter
                                 counts (restormer/counts.json)
  uformer/*.safetensors          small Uformers (plain, EP, AP) written in PyTorch from MIOIR.md
                                 and MiOIR's Uformer/_EP/_AP, with their parameter names (the
                                 saved `relative_position_index` buffers too); Uformer-B's counts
  promptir/*.safetensors         a small PromptIR (its own prompt blocks); the reference's count
Run one part with `tools/reference.sh restormer` (parts: pairs bicubic jpeg srresnet swinir
restormer uformer promptir); no argument runs them all.
Run through tools/reference.sh. The pairs are made here (numpy seeded), so they do not depend
on mio; mio's tests read them and must agree with the numbers.
"""
import functools
import json
import pathlib

import cv2
import numpy as np
import torch
from PIL import Image
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from torch_models import Extractor, PromptIR, Restormer, SRResNet, Uformer

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
OUT = ROOT / "stdlib" / "tests" / "data"


def load(name):
    return np.asarray(Image.open(DATA / name).convert("RGB"))


def save(arr, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def y_channel(img):
    # BasicSR's to_y_channel: ITU-R BT.601 Y on the 0..255 scale, not rounded.
    return rgb2ycbcr(img.astype(np.float64) / 255.0)[..., 0]


def metrics(clean, degraded, crop, y):
    a, b = clean, degraded
    if crop:
        a, b = a[crop:-crop, crop:-crop], b[crop:-crop, crop:-crop]
    if y:
        a, b = y_channel(a), y_channel(b)
        kw = {}
    else:
        a, b = a.astype(np.float64), b.astype(np.float64)
        kw = {"channel_axis": 2}
    psnr = peak_signal_noise_ratio(a, b, data_range=255)
    ssim = structural_similarity(a, b, data_range=255, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, **kw)
    return psnr, ssim


def make_pairs():
    rng = np.random.default_rng(0)
    pairs = {}
    # Non-square crops, so a width/height mix-up cannot pass.
    chelsea = load("test/chelsea.png")[60:180, 100:260]
    noisy = np.clip(chelsea + rng.normal(0, 25, chelsea.shape), 0, 255).round().astype(np.uint8)
    pairs["chelsea_noise"] = (chelsea, noisy)
    camera = np.ascontiguousarray(load("test/camera.png")[100:260, 150:270])
    ok, buf = cv2.imencode(".jpg", camera[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 30])
    pairs["camera_jpeg"] = (camera, cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    hopper = np.ascontiguousarray(load("test/grace_hopper.png")[40:168, 80:240])
    pairs["hopper_blur"] = (hopper, cv2.GaussianBlur(hopper, (9, 9), 2.0))
    result = {}
    for name, (clean, degraded) in pairs.items():
        save(clean, OUT / "metrics" / f"{name}_clean.png")
        save(np.ascontiguousarray(degraded), OUT / "metrics" / f"{name}_degraded.png")
        entry = {}
        for crop in (0, 4):
            for y in (False, True):
                p, s = metrics(clean, degraded, crop, y)
                key = f"crop{crop}_{'y' if y else 'rgb'}"
                entry[f"psnr_{key}"] = p
                entry[f"ssim_{key}"] = s
        result[name] = entry
    (OUT / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print("metrics:", json.dumps(result, indent=1))


def make_bicubic():
    crops = {
        "chelsea": load("test/chelsea.png")[40:168, 100:228],
        "brick": load("train/brick.png")[0:128, 0:128],
        "astronaut": load("train/astronaut.png")[64:160, 200:328],   # 96 x 128
        "hubble": load("train/hubble.png")[200:328, 200:328],
    }
    for name, img in crops.items():
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0
        lr = torch.nn.functional.interpolate(x, scale_factor=0.25, mode="bicubic", align_corners=False)
        lr = (lr.clamp(0, 1) * 255).round() / 255
        sr = torch.nn.functional.interpolate(lr, size=img.shape[:2], mode="bicubic", align_corners=False)
        to8 = lambda t: (t.clamp(0, 1) * 255).round().byte()[0].permute(1, 2, 0).numpy()
        save(np.ascontiguousarray(img), OUT / "bicubic" / f"{name}.png")
        save(to8(lr), OUT / "bicubic" / f"{name}_lr.png")
        save(to8(sr), OUT / "bicubic" / f"{name}_sr.png")
        # MATLAB-style antialiased bicubic (a = -0.5) as PIL computes it; PIL renormalises the
        # kernel at the borders where MATLAB mirrors, so only the interior is comparable.
        h, w = img.shape[:2]
        pil = Image.fromarray(np.ascontiguousarray(img)).resize((w // 4, h // 4), Image.Resampling.BICUBIC)
        save(np.asarray(pil), OUT / "bicubic" / f"{name}_pil_lr.png")
    print("bicubic:", ", ".join(crops))


def make_jpeg():
    result = {}
    for name in ("test/chelsea.png", "test/camera.png", "test/grace_hopper.png"):
        img = load(name)
        entry = {}
        for q in (10, 30, 50, 70, 90):
            ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
            dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
            entry[str(q)] = {"bytes": int(buf.size), "psnr": peak_signal_noise_ratio(img, dec, data_range=255)}
        result[name] = entry
    (OUT / "jpeg.json").write_text(json.dumps(result, indent=2) + "\n")
    print("jpeg:", json.dumps(result))


def make_srresnet():
    from safetensors.torch import save_file

    torch.manual_seed(0)
    for name, prompt_in in (("plain", 0), ("explicit", 1), ("adaptive", 3)):
        net = SRResNet(16, 2, prompt_in, 16).eval()
        # Larger than the default init, so every branch visibly matters.
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(1.5)
        x = torch.rand(2, 3, 24, 20)
        source = {0: None, 1: torch.rand(2, 1, 32, 32), 3: x}[prompt_in]
        with torch.no_grad():
            y = net(x, source)
        (OUT / "srresnet").mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, OUT / "srresnet" / f"{name}.safetensors")
        io = {"x": x, "y": y}
        if prompt_in == 1:
            io["maps"] = source
        save_file(io, OUT / "srresnet" / f"{name}_io.safetensors")
    print("srresnet: plain, explicit, adaptive")


@functools.cache
def official_swinir():
    """BasicSR's SwinIR class, loaded from the `basicsr` wheel alone (its package __init__ pulls
    in far more than this file needs). Once per process: it stubs `basicsr` in sys.modules."""
    import importlib.util
    import sys
    import types

    spec = importlib.util.find_spec("basicsr")
    root = pathlib.Path(spec.submodule_search_locations[0])
    registry = types.ModuleType("basicsr.utils.registry")

    class Registry:
        def register(self, obj=None, **_):
            return obj if obj is not None else (lambda f: f)

    registry.ARCH_REGISTRY = Registry()
    util = types.ModuleType("basicsr.archs.arch_util")
    util.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
    util.trunc_normal_ = torch.nn.init.trunc_normal_
    for name in ("basicsr", "basicsr.utils", "basicsr.archs"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["basicsr.utils.registry"] = registry
    sys.modules["basicsr.archs.arch_util"] = util
    spec = importlib.util.spec_from_file_location("basicsr.archs.swinir_arch", root / "archs" / "swinir_arch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SwinIR


def make_swinir():
    from safetensors.torch import save_file

    SwinIR = official_swinir()
    torch.manual_seed(0)
    # Scale 1 restoration ("denoising" path), MIOIR's RGB mean, a small configuration.
    net = SwinIR(upscale=1, in_chans=3, img_size=16, window_size=4, img_range=1.0, depths=[2, 2],
                 embed_dim=12, num_heads=[2, 2], mlp_ratio=2, upsampler="", resi_connection="1conv").eval()
    net.mean = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # move off the init so every weight matters
    x = torch.rand(2, 3, 16, 12)
    with torch.no_grad():
        y = net(x)
    # Buffers (relative_position_index, attn_mask) are recomputed by mio, not loaded.
    weights = {k: v.contiguous() for k, v in net.state_dict().items()
               if not k.endswith("relative_position_index") and not k.endswith("attn_mask")}
    (OUT / "swinir").mkdir(parents=True, exist_ok=True)
    save_file(weights, OUT / "swinir" / "small.safetensors")
    save_file({"x": x, "y": y}, OUT / "swinir" / "small_io.safetensors")
    print("swinir: small, parameters", sum(v.numel() for v in weights.values()))


def make_swinir_prompted():
    """MiOIR's SwinIR_EP/_AP at scale 1: BasicSR's SwinIR body (conv_first, patch_embed, the
    residual groups, norm, conv_after_body), a modulation after each group, after the body conv,
    after conv_before_upsample (to 64 channels, LeakyReLU 0.01) and after conv_last."""
    import torch.nn as nn
    from safetensors.torch import save_file

    SwinIR = official_swinir()

    class SwinIRPrompted(SwinIR):
        def __init__(self, prompt_in, dim, **kw):
            super().__init__(**kw)
            c, f = kw["embed_dim"], 64
            self.F_ext_net = Extractor(prompt_in, dim)
            for layer in self.layers:
                layer.prompt_scale, layer.prompt_shift = nn.Linear(dim, c), nn.Linear(dim, c)
            self.prompt_scale_after_body, self.prompt_shift_after_body = nn.Linear(dim, c), nn.Linear(dim, c)
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(c, f, 3, 1, 1), nn.LeakyReLU(inplace=True))
            self.prompt_scale_before_upsample, self.prompt_shift_before_upsample = nn.Linear(dim, f), nn.Linear(dim, f)
            self.conv_last = nn.Conv2d(f, 3, 3, 1, 1)
            self.prompt_scale_last, self.prompt_shift_last = nn.Linear(dim, 3), nn.Linear(dim, 3)

        def forward(self, x, source):
            z = self.F_ext_net(source)
            img = lambda t, s, b: t * s(z)[:, :, None, None] + b(z)[:, :, None, None] + t
            x = x - self.mean
            first = self.conv_first(x)
            size = (x.shape[2], x.shape[3])
            t = self.patch_embed(first)
            for layer in self.layers:
                t = layer(t, size)
                t = t * layer.prompt_scale(z)[:, None, :] + layer.prompt_shift(z)[:, None, :] + t
            t = self.patch_unembed(self.norm(t), size)
            res = img(self.conv_after_body(t) + first, self.prompt_scale_after_body, self.prompt_shift_after_body)
            f = img(self.conv_before_upsample(res), self.prompt_scale_before_upsample, self.prompt_shift_before_upsample)
            out = img(self.conv_last(f), self.prompt_scale_last, self.prompt_shift_last)
            return out + self.mean

    torch.manual_seed(1)
    for name, prompt_in in (("explicit", 1), ("adaptive", 3)):
        net = SwinIRPrompted(prompt_in, 8, upscale=1, in_chans=3, img_size=16, window_size=4, img_range=1.0,
                             depths=[2, 1], embed_dim=12, num_heads=[2, 2], mlp_ratio=2, upsampler="",
                             resi_connection="1conv").eval()
        net.mean = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        x = torch.rand(2, 3, 16, 12)
        source = torch.rand(2, 1, 32, 32) if prompt_in == 1 else x
        with torch.no_grad():
            y = net(x, source)
        weights = {k: v.contiguous() for k, v in net.state_dict().items()
                   if not k.endswith("relative_position_index") and not k.endswith("attn_mask")}
        save_file(weights, OUT / "swinir" / f"{name}.safetensors")
        io = {"x": x, "y": y.contiguous()}
        if prompt_in == 1:
            io["source"] = source
        save_file(io, OUT / "swinir" / f"{name}_io.safetensors")
    print("swinir: explicit, adaptive")


def make_restormer():
    from safetensors.torch import save_file

    (OUT / "restormer").mkdir(parents=True, exist_ok=True)
    counts = {name: sum(p.numel() for p in Restormer(prompt_in=pin).parameters())
              for name, pin in (("plain", 0), ("explicit", 1), ("adaptive", 3))}
    (OUT / "restormer" / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    torch.manual_seed(2)
    for name, prompt_in in (("plain", 0), ("explicit", 1), ("adaptive", 3)):
        net = Restormer(dim=6, blocks=(1, 2, 1, 1), refinement=1, heads=(1, 2, 2, 3), expansion=2.66,
                        bias=True, prompt_in=prompt_in, pdim=8).eval()
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.05)  # off the init (LayerNorms, temperatures) so all matter
        x = torch.rand(2, 3, 16, 24)
        source = {0: None, 1: torch.rand(2, 1, 32, 32), 3: x}[prompt_in]
        with torch.no_grad():
            y = net(x, source)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()},
                  OUT / "restormer" / f"{name}.safetensors")
        io = {"x": x, "y": y}
        if prompt_in == 1:
            io["source"] = source
        save_file(io, OUT / "restormer" / f"{name}_io.safetensors")
    print("restormer: plain, explicit, adaptive; reference parameters", json.dumps(counts))


def save_case(net, x, source, folder, name):
    """Weights nudged off their initial values (so every LayerNorm and modulator matters), the
    input and PyTorch's output."""
    from safetensors.torch import save_file

    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        y = net(x, source)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, OUT / folder / f"{name}.safetensors")
    io = {"x": x, "y": y}
    if source is not None and source is not x:
        io["source"] = source
    save_file(io, OUT / folder / f"{name}_io.safetensors")


def make_uformer():
    (OUT / "uformer").mkdir(parents=True, exist_ok=True)
    counts = {name: sum(p.numel() for p in Uformer(prompt_in=pin).parameters())
              for name, pin in (("plain", 0), ("explicit", 1), ("adaptive", 3))}
    (OUT / "uformer" / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    torch.manual_seed(3)
    for name, prompt_in in (("plain", 0), ("explicit", 1), ("adaptive", 3)):
        # Window 2: sides multiples of 32; a non-square input, so a height/width mix-up fails.
        net = Uformer(embed=4, depths=(1, 2, 1, 1, 2, 1, 1, 1, 2), heads=(1, 1, 2, 2, 4, 4, 2, 2, 1), ws=2,
                      mlp_ratio=4.0, modulator=True, prompt_in=prompt_in, pdim=8).eval()
        x = torch.rand(2, 3, 32, 64)
        source = {0: None, 1: torch.rand(2, 1, 32, 32), 3: x}[prompt_in]
        save_case(net, x, source, "uformer", name)
    print("uformer: plain, explicit, adaptive; Uformer-B parameters", json.dumps(counts))


def make_promptir():
    (OUT / "promptir").mkdir(parents=True, exist_ok=True)
    counts = {"plain": sum(p.numel() for p in PromptIR().parameters())}
    (OUT / "promptir" / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    torch.manual_seed(4)
    # Prompt sizes other than the levels' sides, so the bilinear resize is exercised.
    net = PromptIR(dim=6, blocks=(1, 2, 1, 1), refinement=1, heads=(1, 2, 2, 3), expansion=2.66, bias=True,
                   pdims=(4, 8, 10), sizes=(6, 4, 3), plen=3).eval()
    save_case(net, torch.rand(2, 3, 16, 40), None, "promptir", "plain")
    print("promptir: plain; reference parameters", json.dumps(counts))


if __name__ == "__main__":
    import sys

    parts = {"pairs": [make_pairs], "bicubic": [make_bicubic], "jpeg": [make_jpeg], "srresnet": [make_srresnet],
             "swinir": [make_swinir, make_swinir_prompted], "restormer": [make_restormer],
             "uformer": [make_uformer], "promptir": [make_promptir]}
    for part in sys.argv[1:] or list(parts):
        for make in parts[part]:
            make()
