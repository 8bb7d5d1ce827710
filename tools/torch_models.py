"""mio's networks in PyTorch, with the reference implementation's parameter names: the
reference values (tools/reference.py) and the speed baselines (tools/bench_train.py) use them.
Written from MIOIR.md, the Restormer, Uformer, PromptIR and SwinIR papers and MiOIR's
prompted classes (Uformer and PromptIR checked by hand against the reference's own
uformer_arch.py and promptir_arch.py, SwinIR against BasicSR's output on
stdlib/tests/data/swinir); nothing in mio depends on this file.

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


def tokens_modulate(t, z, scale, shift):
    """The same on tokens `[B, N, C]`."""
    return t * scale(z)[:, None, :] + shift(z)[:, None, :] + t


def shift_mask(h, w, ws, s):
    """-100 between positions of a shifted window that came from different regions."""
    region = torch.zeros(h, w)
    cuts = lambda n: ((0, n - ws), (n - ws, n - s), (n - s, n))
    for i, (a, b) in enumerate(cuts(h)):
        for j, (c, d) in enumerate(cuts(w)):
            region[a:b, c:d] = 3 * i + j
    win = region.view(h // ws, ws, w // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws)
    diff = win[:, None, :] - win[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


class WindowAttention(nn.Module):
    """Uformer's window attention: `qkv.to_q`, `qkv.to_kv` (linear projection), a relative
    position bias table with its index saved as a buffer, `proj`."""

    def __init__(self, c, heads, ws):
        super().__init__()
        self.heads, self.ws = heads, ws
        self.relative_position_bias_table = nn.Parameter(torch.randn((2 * ws - 1) ** 2, heads) * 0.02)
        ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
        pos = torch.stack([ys.flatten(), xs.flatten()])
        rel = (pos[:, :, None] - pos[:, None, :]).permute(1, 2, 0) + (ws - 1)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * ws - 1) + rel[..., 1])
        self.qkv = nn.Module()
        self.qkv.to_q = nn.Linear(c, c)
        self.qkv.to_kv = nn.Linear(c, 2 * c)
        self.proj = nn.Linear(c, c)

    def forward(self, x, mask=None):
        bw, n, c = x.shape
        hd = c // self.heads
        q = self.qkv.to_q(x).reshape(bw, n, self.heads, hd).transpose(1, 2) * hd ** -0.5
        kv = self.qkv.to_kv(x).reshape(bw, n, 2, self.heads, hd).permute(2, 0, 3, 1, 4)
        attn = q @ kv[0].transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1)[None]
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None]).view(bw, self.heads, n, n)
        out = attn.softmax(-1) @ kv[1]
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class LeFF(nn.Module):
    """Linear, GELU, 3x3 depthwise conv over the token grid, GELU, linear."""

    def __init__(self, c, hidden):
        super().__init__()
        self.linear1 = nn.Sequential(nn.Linear(c, hidden), nn.GELU())
        self.dwconv = nn.Sequential(nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden), nn.GELU())
        self.linear2 = nn.Sequential(nn.Linear(hidden, c))

    def forward(self, x, h, w):
        b, n, _ = x.shape
        t = self.linear1(x).transpose(1, 2).reshape(b, -1, h, w)
        t = self.dwconv(t).flatten(2).transpose(1, 2)
        return self.linear2(t)


class LeWinBlock(nn.Module):
    def __init__(self, c, heads, ws, shift, mlp_ratio, modulator):
        super().__init__()
        self.ws, self.shift = ws, shift
        self.modulator = nn.Embedding(ws * ws, c) if modulator else None
        self.norm1 = nn.LayerNorm(c)
        self.attn = WindowAttention(c, heads, ws)
        self.norm2 = nn.LayerNorm(c)
        self.mlp = LeFF(c, int(c * mlp_ratio))

    def forward(self, x, h, w):
        b, n, c = x.shape
        ws, s = self.ws, self.shift
        t = self.norm1(x).view(b, h, w, c)
        if s:
            t = torch.roll(t, (-s, -s), (1, 2))
        win = t.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
        if self.modulator is not None:
            win = win + self.modulator.weight
        out = self.attn(win, shift_mask(h, w, ws, s).to(x.device) if s else None)
        t = out.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        if s:
            t = torch.roll(t, (s, s), (1, 2))
        x = x + t.reshape(b, n, c)
        return x + self.mlp(self.norm2(x), h, w)


class UformerLayer(nn.Module):
    def __init__(self, c, depth, heads, ws, mlp_ratio, modulator):
        super().__init__()
        self.blocks = nn.ModuleList(
            [LeWinBlock(c, heads, ws, 0 if i % 2 == 0 else ws // 2, mlp_ratio, modulator) for i in range(depth)])

    def forward(self, x, h, w):
        for blk in self.blocks:
            x = blk(x, h, w)
        return x


class Uformer(nn.Module):
    """Uformer (Wang et al., CVPR 2022) as MiOIR trains it (Uformer-B: embed 32, window 8, LeFF,
    modulators in the decoder), tokens `[B, H*W, C]` throughout; prompted as MiOIR's
    Uformer_EP/_AP: five extractors, modulating the bottleneck and each decoder level in token
    layout and the output before the global residual."""

    def __init__(self, embed=32, depths=(1, 2, 8, 8, 2, 8, 8, 2, 1), heads=(1, 2, 4, 8, 16, 16, 8, 4, 2),
                 ws=8, mlp_ratio=4.0, modulator=True, prompt_in=0, pdim=64):
        super().__init__()
        e = embed
        enc = [e, 2 * e, 4 * e, 8 * e]
        dec = [16 * e, 8 * e, 4 * e, 2 * e]
        self.input_proj = nn.Module()
        self.input_proj.proj = nn.Sequential(nn.Conv2d(3, e, 3, 1, 1), nn.LeakyReLU(inplace=True))
        self.output_proj = nn.Module()
        self.output_proj.proj = nn.Sequential(nn.Conv2d(2 * e, 3, 3, 1, 1))
        for i in range(4):
            setattr(self, f"encoderlayer_{i}", UformerLayer(enc[i], depths[i], heads[i], ws, mlp_ratio, False))
            down = nn.Module()
            down.conv = nn.Sequential(nn.Conv2d(enc[i], 2 * enc[i], 4, 2, 1))
            setattr(self, f"dowsample_{i}", down)
        self.conv = UformerLayer(16 * e, depths[4], heads[4], ws, mlp_ratio, False)
        ups_in = [16 * e, 16 * e, 8 * e, 4 * e]
        for i in range(4):
            up = nn.Module()
            up.deconv = nn.Sequential(nn.ConvTranspose2d(ups_in[i], dec[i] // 2, 2, 2))
            setattr(self, f"upsample_{i}", up)
            setattr(self, f"decoderlayer_{i}",
                    UformerLayer(dec[i], depths[5 + i], heads[5 + i], ws, mlp_ratio, modulator))
        self.prompted = prompt_in > 0
        if self.prompted:
            for i in range(1, 6):
                setattr(self, f"F_ext_net{i}", Extractor(prompt_in, pdim))
            for i, ch in enumerate([16 * e, 16 * e, 8 * e, 4 * e, 2 * e, 3]):
                setattr(self, f"prompt_scale{i}", nn.Linear(pdim, ch))
                setattr(self, f"prompt_shift{i}", nn.Linear(pdim, ch))

    def forward(self, x, source=None):
        b, _, h, w = x.shape
        if self.prompted:
            zs = [getattr(self, f"F_ext_net{i}")(source) for i in range(1, 6)]
            which = [0, 0, 1, 2, 3, 4]
            mod = lambda t, i: tokens_modulate(t, zs[which[i]], getattr(self, f"prompt_scale{i}"),
                                               getattr(self, f"prompt_shift{i}"))
        else:
            mod = lambda t, i: t
        to_img = lambda t, hh, ww: t.transpose(1, 2).reshape(b, -1, hh, ww)
        to_tok = lambda t: t.flatten(2).transpose(1, 2)
        y = to_tok(self.input_proj.proj(x))
        skips, sizes = [], []
        hh, ww = h, w
        for i in range(4):
            y = getattr(self, f"encoderlayer_{i}")(y, hh, ww)
            skips.append(y)
            sizes.append((hh, ww))
            y = to_tok(getattr(self, f"dowsample_{i}").conv(to_img(y, hh, ww)))
            hh, ww = hh // 2, ww // 2
        y = mod(self.conv(y, hh, ww), 0)
        for i in range(4):
            up = to_tok(getattr(self, f"upsample_{i}").deconv(to_img(y, hh, ww)))
            hh, ww = sizes[3 - i]
            y = torch.cat([up, skips[3 - i]], -1)
            y = mod(getattr(self, f"decoderlayer_{i}")(y, hh, ww), i + 1)
        out = self.output_proj.proj(to_img(y, h, w))
        if self.prompted:
            out = modulate(out, zs[4], self.prompt_scale5, self.prompt_shift5)
        return x + out


class PromptGen(nn.Module):
    """PromptIR's prompt block: `prompt_len` learnt components weighted by a softmax of a linear
    map of the pooled features, resized bilinearly to the features, then a 3x3 conv."""

    def __init__(self, pdim, plen, size, lin):
        super().__init__()
        self.prompt_param = nn.Parameter(torch.rand(1, plen, pdim, size, size))
        self.linear_layer = nn.Linear(lin, plen)
        self.conv3x3 = nn.Conv2d(pdim, pdim, 3, 1, 1, bias=False)

    def forward(self, x):
        b, c, h, w = x.shape
        weights = F.softmax(self.linear_layer(x.mean(dim=(2, 3))), dim=1)
        prompt = (weights[:, :, None, None, None] * self.prompt_param).sum(1)
        return self.conv3x3(F.interpolate(prompt, (h, w), mode="bilinear"))


class PromptIR(Restormer):
    """PromptIR (Potlapalli et al., NeurIPS 2023): a Restormer body whose decoder reads three
    prompt blocks; each prompt is concatenated to the features, passed through a transformer
    block (`noise_level*`) and reduced (`reduce_noise_level*`). The reference's channel counts
    are these for dim 48."""

    def __init__(self, dim=48, blocks=(4, 6, 6, 8), refinement=4, heads=(1, 2, 4, 8), expansion=2.66,
                 bias=False, pdims=(64, 128, 320), sizes=(64, 32, 16), plen=5):
        super().__init__(dim, blocks, refinement, heads, expansion, bias)
        d = dim
        self.up4_3 = Resample(4 * d, 8 * d, True)
        self.reduce_chan_level3 = nn.Conv2d(6 * d, 4 * d, 1, bias=bias)
        self.up3_2 = Resample(4 * d, 8 * d, True)
        for i, (pd, size, lin) in enumerate(zip(pdims, sizes, (2 * d, 4 * d, 8 * d)), 1):
            setattr(self, f"prompt{i}", PromptGen(pd, plen, size, lin))
        feats = {1: 2 * d, 2: 4 * d, 3: 8 * d}
        for i in (1, 2, 3):
            ch = feats[i] + pdims[i - 1]
            setattr(self, f"noise_level{i}", TransformerBlock(ch, heads[2], expansion, bias))
            setattr(self, f"reduce_noise_level{i}", nn.Conv2d(ch, 2 * d if i == 1 else 4 * d, 1, bias=bias))

    def noise(self, t, i):
        t = torch.cat([t, getattr(self, f"prompt{i}")(t)], 1)
        return getattr(self, f"reduce_noise_level{i}")(getattr(self, f"noise_level{i}")(t))

    def forward(self, x, source=None):
        e1 = self.encoder_level1(self.patch_embed.proj(x))
        e2 = self.encoder_level2(self.down1_2(e1))
        e3 = self.encoder_level3(self.down2_3(e2))
        lat = self.noise(self.latent(self.down3_4(e3)), 3)
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(lat), e3], 1)))
        d3 = self.noise(d3, 2)
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), e2], 1)))
        d2 = self.noise(d2, 1)
        d1 = self.decoder_level1(torch.cat([self.up2_1(d2), e1], 1))
        return self.output(self.refinement(d1)) + x


class SwinBlock(nn.Module):
    """SwinIR's Swin transformer block: window attention with one `qkv` projection."""

    def __init__(self, c, heads, ws, shift, mlp_ratio):
        super().__init__()
        self.ws, self.shift, self.heads = ws, shift, heads
        self.norm1 = nn.LayerNorm(c)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(c, 3 * c)
        self.attn.proj = nn.Linear(c, c)
        self.attn.relative_position_bias_table = nn.Parameter(torch.randn((2 * ws - 1) ** 2, heads) * 0.02)
        ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
        pos = torch.stack([ys.flatten(), xs.flatten()])
        rel = (pos[:, :, None] - pos[:, None, :]).permute(1, 2, 0) + (ws - 1)
        self.register_buffer("index", rel[..., 0] * (2 * ws - 1) + rel[..., 1], persistent=False)
        self.norm2 = nn.LayerNorm(c)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(c, int(c * mlp_ratio))
        self.mlp.fc2 = nn.Linear(int(c * mlp_ratio), c)

    def forward(self, x, h, w):
        b, n, c = x.shape
        ws, s, heads = self.ws, self.shift, self.heads
        t = self.norm1(x).view(b, h, w, c)
        if s:
            t = torch.roll(t, (-s, -s), (1, 2))
        win = t.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
        bw, m, _ = win.shape
        qkv = self.attn.qkv(win).reshape(bw, m, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        attn = (qkv[0] * (c // heads) ** -0.5) @ qkv[1].transpose(-2, -1)
        bias = self.attn.relative_position_bias_table[self.index.view(-1)].view(m, m, -1).permute(2, 0, 1)
        attn = attn + bias[None]
        if s:
            mask = shift_mask(h, w, ws, s).to(x.device)
            nw = mask.shape[0]
            attn = (attn.view(bw // nw, nw, heads, m, m) + mask[None, :, None]).view(bw, heads, m, m)
        out = self.attn.proj((attn.softmax(-1) @ qkv[2]).transpose(1, 2).reshape(bw, m, c))
        t = out.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        if s:
            t = torch.roll(t, (s, s), (1, 2))
        x = x + t.reshape(b, n, c)
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class SwinIR(nn.Module):
    """SwinIR at scale 1 for restoration (BasicSR's `upsampler = ""`), with its parameter names:
    the input minus the RGB mean, conv_first, LayerNorm'd tokens through residual Swin groups
    (each ending in a 3x3 conv and the group's input), a last LayerNorm, conv_after_body plus
    conv_first's output, then the input plus conv_last of that."""

    def __init__(self, embed=180, depths=(6, 6, 6, 6, 6, 6), heads=6, ws=8, mlp_ratio=2.0):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1), persistent=False)
        c = embed
        self.conv_first = nn.Conv2d(3, c, 3, 1, 1)
        self.patch_embed = nn.Module()
        self.patch_embed.norm = nn.LayerNorm(c)
        self.layers = nn.ModuleList()
        for depth in depths:
            layer = nn.Module()
            layer.residual_group = nn.Module()
            layer.residual_group.blocks = nn.ModuleList(
                [SwinBlock(c, heads, ws, 0 if j % 2 == 0 else ws // 2, mlp_ratio) for j in range(depth)])
            layer.conv = nn.Conv2d(c, c, 3, 1, 1)
            self.layers.append(layer)
        self.norm = nn.LayerNorm(c)
        self.conv_after_body = nn.Conv2d(c, c, 3, 1, 1)
        self.conv_last = nn.Conv2d(c, 3, 3, 1, 1)

    def forward(self, x, source=None):
        b, _, h, w = x.shape
        x = x - self.mean
        first = self.conv_first(x)
        c = first.shape[1]
        tokens = self.patch_embed.norm(first.flatten(2).transpose(1, 2))
        for layer in self.layers:
            t = tokens
            for blk in layer.residual_group.blocks:
                t = blk(t, h, w)
            r = layer.conv(t.transpose(1, 2).reshape(b, c, h, w))
            tokens = r.flatten(2).transpose(1, 2) + tokens
        feat = self.norm(tokens).transpose(1, 2).reshape(b, c, h, w)
        res = self.conv_after_body(feat) + first
        return x + self.conv_last(res) + self.mean
