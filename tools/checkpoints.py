"""Checkpoints in the reference's own formats, written by PyTorch, for mio's tests; and the
check that a model exported by `mio export` loads into PyTorch (by hand).

    tools/checkpoints.sh make            # writes stdlib/tests/data/pth/
    tools/checkpoints.sh load DIR        # loads `mio export`'s DIR into the PyTorch model

`make` writes, as BasicSR saves them: a small SRResNet with explicit prompts
(`{"params": ..., "params_ema": ...}` in a `.pth`), its task maps as the reference ships them
(`type7.npy`: float64 [7, S, S], the reference's task order blur, noise, jpeg, rain, haze,
low light, sr), a task classifier (`{"params": ...}`), and PyTorch's outputs on fixed inputs
(`io.safetensors`); and the SwinIR, Restormer, Uformer and PromptIR fixtures of
tools/reference.py as `.pth` files (Uformer's with its `relative_position_index` buffers). Nothing in mio depends on this file.
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).parent))
from torch_models import Classifier, SRResNet  # noqa: E402

OUT = Path(__file__).parent.parent / "stdlib" / "tests" / "data" / "pth"
TASKS = ["blur", "noise", "jpeg", "rain", "haze", "lowlight", "sr"]


def make():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = SRResNet(16, 2, 1, 16).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.5)
    params = {k: v.clone() for k, v in net.state_dict().items()}
    # The EMA differs from the weights, so a test sees which one was read.
    ema = {k: v * 0.9 for k, v in params.items()}
    torch.save({"params": params, "params_ema": ema}, OUT / "srresnet_ep.pth")
    torch.save(params, OUT / "srresnet_ep_bare.pth")
    maps = np.random.default_rng(0).random((7, 32, 32))
    np.save(OUT / "type7.npy", maps)
    x = torch.rand(1, 3, 24, 20)
    io = {"x": x}
    src = torch.from_numpy(maps[TASKS.index("rain")]).float()[None, None]
    with torch.no_grad():
        io["y_params"] = net(x, src)
        net.load_state_dict(ema)
        io["y_ema"] = net(x, src)
    clf = Classifier(7).eval()
    torch.save({"params": clf.state_dict()}, OUT / "classifier.pth")
    cx = torch.rand(2, 3, 48, 40)
    with torch.no_grad():
        io["classifier_x"] = cx
        io["classifier_logits"] = clf(cx)
    save_file(io, OUT / "io.safetensors")
    # The prompted SwinIR and Restormer of tools/reference.py's fixtures, as BasicSR saves them:
    # the same weights read through the .pth path must restore as PyTorch does.
    data = OUT.parent
    for arch, name in (("swinir", "explicit"), ("restormer", "explicit"), ("uformer", "explicit"),
                       ("promptir", "plain")):
        weights = load_file(data / arch / f"{name}.safetensors")
        torch.save({"params": weights}, data / arch / f"{name}.pth")
    print(f"wrote {OUT} and the .pth files of swinir, restormer, uformer and promptir")


def load(folder):
    """Loads `mio export`'s folder into the PyTorch model and restores its sample input."""
    folder = Path(folder)
    info = json.loads((folder / "export.json").read_text())
    weights = load_file(folder / "weights.safetensors")
    arch = info["arch"]
    if arch["kind"] != "srresnet":
        sys.exit(f"this check builds SRResNets; the export is {arch['kind']}")
    prompt_in = {"none": 0, "explicit": 1, "adaptive": 3}[arch["prompt"]]
    net = SRResNet(arch["channels"], arch["blocks"], prompt_in, arch.get("dim", 64)).eval()
    net.load_state_dict(weights, strict=True)
    x = torch.rand(1, 3, 32, 32)
    src = None
    if prompt_in == 1:
        maps = np.load(folder / "maps.npy")
        src = torch.from_numpy(maps[0]).float()[None, None]
    elif prompt_in == 3:
        src = x
    with torch.no_grad():
        y = net(x, src)
    print(f"loaded {len(weights)} tensors strictly; output {tuple(y.shape)}, mean {y.mean():.4f}")
    if info.get("classifier"):
        clf = Classifier(len(info["tasks"])).eval()
        clf.load_state_dict(load_file(folder / info["classifier"]), strict=True)
        with torch.no_grad():
            guess = clf(x).argmax(1).item()
        print(f"classifier loaded strictly; it says `{info['tasks'][guess]}` for a random image")


if __name__ == "__main__":
    {"make": lambda: make(), "load": lambda: load(sys.argv[2])}[sys.argv[1]]()
