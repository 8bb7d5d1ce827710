"""mio's networks in PyTorch, with the reference implementation's parameter names: the
reference values (tools/reference.py) and the speed baselines (tools/bench_train.py) use them.
Written from MIOIR.md, the Restormer paper and MiOIR's Restormer_EP/_AP; nothing in mio
depends on this file.

`prompt_in` is 0 (plain), 1 (explicit prompts: `source` is a task map per image) or 3
(adaptive prompts: `source` is the degraded input).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Extractor(nn.Module):
    """F_ext: zero-pad 1, conv 7x7 stride 2, ReLU, two 3x3 stride-2 convs with ReLU, spatial mean."""

    def __init__(self, cin, dim):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, dim, 7, 2, 1)
        self.conv2 = nn.Conv2d(dim, dim, 3, 2, 1)
        self.conv3 = nn.Conv2d(dim, dim, 3, 2, 1)

    def forward(self, x):
        h = F.relu(self.conv3(F.relu(self.conv2(F.relu(self.conv1(x))))))
        return h.mean(dim=(2, 3))


def modulate(f, z, scale, shift):
    """f * (1 + scale(z)) + shift(z), written as the reference writes it."""
    return f * scale(z)[:, :, None, None] + shift(z)[:, :, None, None] + f


class SRBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class SRResNet(nn.Module):
    """SRResNet at scale 1 (BasicSR's MSRResNet without upsampling; MiOIR's SRResNet_EP/_AP)."""

    def __init__(self, c, n, prompt_in=0, dim=64):
        super().__init__()
        self.n, self.prompted = n, prompt_in > 0
        self.conv_first = nn.Conv2d(3, c, 3, 1, 1)
        if self.prompted:
            self.F_ext_net = Extractor(prompt_in, dim)
            for k in range(1, n + 1):
                setattr(self, f"body{k}", nn.Sequential(SRBlock(c)))
                setattr(self, f"prompt_scale{k}", nn.Linear(dim, c))
                setattr(self, f"prompt_shift{k}", nn.Linear(dim, c))
            self.prompt_scalehr, self.prompt_shifthr = nn.Linear(dim, c), nn.Linear(dim, c)
            self.prompt_scaleout, self.prompt_shiftout = nn.Linear(dim, 3), nn.Linear(dim, 3)
        else:
            self.body = nn.Sequential(*[SRBlock(c) for _ in range(n)])
        self.conv_hr = nn.Conv2d(c, c, 3, 1, 1)
        self.conv_last = nn.Conv2d(c, 3, 3, 1, 1)

    def forward(self, x, source=None):
        lrelu = lambda t: F.leaky_relu(t, 0.1)
        feat = lrelu(self.conv_first(x))
        if self.prompted:
            z = self.F_ext_net(source)
            for k in range(1, self.n + 1):
                feat = getattr(self, f"body{k}")(feat)
                feat = modulate(feat, z, getattr(self, f"prompt_scale{k}"), getattr(self, f"prompt_shift{k}"))
            feat = modulate(lrelu(self.conv_hr(feat)), z, self.prompt_scalehr, self.prompt_shifthr)
            out = modulate(self.conv_last(feat), z, self.prompt_scaleout, self.prompt_shiftout)
        else:
            out = self.conv_last(lrelu(self.conv_hr(self.body(feat))))
        return out + x


class ChannelNorm(nn.Module):
    """Restormer's "WithBias" LayerNorm over channels; the parameters live in `body`."""

    def __init__(self, c):
        super().__init__()
        self.body = nn.Module()
        self.body.weight = nn.Parameter(torch.ones(c))
        self.body.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        mu = x.mean(1, keepdim=True)
        var = x.var(1, keepdim=True, unbiased=False)
        return (x - mu) / torch.sqrt(var + 1e-5) * self.body.weight[:, None, None] + self.body.bias[:, None, None]


class Attention(nn.Module):
    """MDTA: attention across channels with L2-normalised queries and keys and a temperature."""

    def __init__(self, c, heads, bias):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(c, 3 * c, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(3 * c, 3 * c, 3, 1, 1, groups=3 * c, bias=bias)
        self.project_out = nn.Conv2d(c, c, 1, bias=bias)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        return self.project_out((attn @ v).reshape(b, c, h, w))


class FeedForward(nn.Module):
    """GDFN: a depthwise-convolved, GELU-gated feed-forward network."""

    def __init__(self, c, expansion, bias):
        super().__init__()
        hidden = int(c * expansion)
        self.project_in = nn.Conv2d(c, 2 * hidden, 1, bias=bias)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, 1, 1, groups=2 * hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden, c, 1, bias=bias)

    def forward(self, x):
        a, g = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(a) * g)


class TransformerBlock(nn.Module):
    def __init__(self, c, heads, expansion, bias):
        super().__init__()
        self.norm1, self.attn = ChannelNorm(c), Attention(c, heads, bias)
        self.norm2, self.ffn = ChannelNorm(c), FeedForward(c, expansion, bias)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class Resample(nn.Module):
    def __init__(self, cin, cout, shuffle):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
                                  nn.PixelShuffle(2) if shuffle else nn.PixelUnshuffle(2))

    def forward(self, x):
        return self.body(x)


class Restormer(nn.Module):
    """Restormer (Zamir et al., CVPR 2022); prompted as MiOIR's Restormer_EP/_AP: four extractors,
    modulating the latent (1), decoder level 3 (2), decoder levels 2 and 1 and the refinement
    (3) and the output conv (4)."""

    def __init__(self, dim=48, blocks=(4, 6, 6, 8), refinement=4, heads=(1, 2, 4, 8), expansion=2.66,
                 bias=False, prompt_in=0, pdim=64):
        super().__init__()
        c = [dim, 2 * dim, 4 * dim, 8 * dim]
        level = lambda n, ch, hd: nn.Sequential(*[TransformerBlock(ch, hd, expansion, bias) for _ in range(n)])
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, 3, 1, 1, bias=bias)
        self.encoder_level1 = level(blocks[0], c[0], heads[0])
        self.down1_2 = Resample(c[0], c[0] // 2, False)
        self.encoder_level2 = level(blocks[1], c[1], heads[1])
        self.down2_3 = Resample(c[1], c[1] // 2, False)
        self.encoder_level3 = level(blocks[2], c[2], heads[2])
        self.down3_4 = Resample(c[2], c[2] // 2, False)
        self.latent = level(blocks[3], c[3], heads[3])
        self.up4_3 = Resample(c[3], c[3] * 2, True)
        self.reduce_chan_level3 = nn.Conv2d(c[3], c[2], 1, bias=bias)
        self.decoder_level3 = level(blocks[2], c[2], heads[2])
        self.up3_2 = Resample(c[2], c[2] * 2, True)
        self.reduce_chan_level2 = nn.Conv2d(c[2], c[1], 1, bias=bias)
        self.decoder_level2 = level(blocks[1], c[1], heads[1])
        self.up2_1 = Resample(c[1], c[1] * 2, True)
        self.decoder_level1 = level(blocks[0], c[1], heads[0])
        self.refinement = level(refinement, c[1], heads[0])
        self.output = nn.Conv2d(c[1], 3, 3, 1, 1, bias=bias)
        self.prompted = prompt_in > 0
        if self.prompted:
            for i in range(1, 5):
                setattr(self, f"F_ext_net{i}", Extractor(prompt_in, pdim))
            for name, ch in zip(["1", "2", "3", "4", "5", "out"], [c[3], c[2], c[1], c[1], c[1], 3]):
                setattr(self, f"prompt_scale{name}", nn.Linear(pdim, ch))
                setattr(self, f"prompt_shift{name}", nn.Linear(pdim, ch))

    def forward(self, x, source=None):
        if self.prompted:
            zs = [getattr(self, f"F_ext_net{i}")(source) for i in range(1, 5)]
            which = {"1": 0, "2": 1, "3": 2, "4": 2, "5": 2, "out": 3}

            def mod(t, name):
                return modulate(t, zs[which[name]], getattr(self, f"prompt_scale{name}"),
                                getattr(self, f"prompt_shift{name}"))
        else:
            mod = lambda t, name: t
        e1 = self.encoder_level1(self.patch_embed.proj(x))
        e2 = self.encoder_level2(self.down1_2(e1))
        e3 = self.encoder_level3(self.down2_3(e2))
        lat = mod(self.latent(self.down3_4(e3)), "1")
        d3 = mod(self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(lat), e3], 1))), "2")
        d2 = mod(self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), e2], 1))), "3")
        d1 = mod(self.decoder_level1(torch.cat([self.up2_1(d2), e1], 1)), "4")
        r = mod(self.refinement(d1), "5")
        return mod(self.output(r), "out") + x


class Classifier(nn.Module):
    """The explicit prompts' task classifier (MIOIR.md): `CondNet` (conv 3->128 k3 s3,
    conv 128->128 k3 s3, three 1x1 convs to 32, LeakyReLU 0.1 between), global average pool,
    `lastOut` Linear(32, tasks); the argmax over the reference's task order picks the map."""

    def __init__(self, tasks=7):
        super().__init__()
        act = lambda: nn.LeakyReLU(0.1)
        self.CondNet = nn.Sequential(
            nn.Conv2d(3, 128, 3, 3), act(),
            nn.Conv2d(128, 128, 3, 3), act(),
            nn.Conv2d(128, 128, 1), act(),
            nn.Conv2d(128, 128, 1), act(),
            nn.Conv2d(128, 32, 1),
        )
        self.lastOut = nn.Linear(32, tasks)

    def forward(self, x):
        return self.lastOut(self.CondNet(x).mean(dim=(2, 3)))
