"""The ViT masked autoencoder (He et al. 2022; ViT-Tiny sizes by default), its classifier, and the
optimizer's schedule: AdamW parameter groups and the warmup-cosine learning rate.

    model = MAE(image_size=32, patch_size=2, channels=3)
    loss, pred, mask = model(x, target)   # x, target (N, C, H, W); loss on masked patches only
    feats = model.encoder.features(x)     # the encoder without masking, for evaluation
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# Patch maskings hide mask_ratio of the patches; "pca" hides no patch: the input and target are
# already split into principal components (pca_project.hide_components, PMAE). The model's "none"
# (pretrain.py --corruption gaussian) hides nothing either: the input is the noisy image.
MASKINGS = ("random", "block", "grid", "pca")


def get_lr(it, lr, warmup_iters, total_iters, min_lr=0.0):
    """Linear warmup from 0 to lr over warmup_iters, then cosine decay to min_lr at total_iters."""
    if it < warmup_iters:
        return lr * it / warmup_iters
    if it >= total_iters:
        return min_lr
    progress = (it - warmup_iters) / (total_iters - warmup_iters)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)


def param_groups(model, weight_decay, layer_decay=1.0):
    """AdamW groups: no weight decay on norms, biases and tokens; with layer_decay < 1, each
    group's lr_scale shrinks by that factor per layer below the top (He et al.'s layer-wise decay):
    the patch embedding and class token get the smallest lr, the final norm and head the full lr."""
    depth = len(model.encoder.blocks)
    groups = {}
    for name, p in model.named_parameters():
        if name.startswith("encoder.blocks."):
            layer = int(name.split(".")[2]) + 1
        elif name.startswith(("encoder.patch_embed", "encoder.cls_token")):
            layer = 0
        else:
            layer = depth + 1
        no_decay = p.ndim < 2 or name.endswith("token")
        scale = layer_decay ** (depth + 1 - layer)
        group = groups.setdefault((no_decay, scale), {
            "params": [], "weight_decay": 0.0 if no_decay else weight_decay, "lr_scale": scale})
        group["params"].append(p)
    return list(groups.values())


def sincos_1d(dim, positions):
    """(len(positions), dim): sines, then cosines, of the positions at dim/2 geometric frequencies.
    """
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    angles = positions.flatten()[:, None] * omega
    return torch.cat([torch.sin(angles), torch.cos(angles)], 1)


def sincos_pos_embed(dim, grid):
    """Fixed 2-D sin-cos position embeddings (grid * grid, dim), patches in row-major order: the
    first half of the channels encodes the row, the second the column (MAE's code has them the
    other way)."""
    assert dim % 4 == 0, "sin-cos position embeddings need dim divisible by 4"
    axis = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    return torch.cat([sincos_1d(dim // 2, rows), sincos_1d(dim // 2, cols)], 1).float()


def init_weights(module):
    """As in the MAE code: xavier-uniform linear layers with zero bias, tokens N(0, 0.02)."""
    for name, p in module.named_parameters():
        if name.endswith("token"):
            nn.init.normal_(p, std=0.02)
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, t, d = x.shape
        qkv = self.qkv(x).view(n, t, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (N, heads, T, d / heads)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """Pre-norm transformer block, with stochastic depth (drop_path) for fine-tuning; given the
    patch grid, Wave-ViT's attention instead of plain attention."""

    def __init__(self, dim, heads, mlp_ratio=4.0, drop_path=0.0, grid=None):
        super().__init__()
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(dim)
        if grid is None:
            self.attn = Attention(dim, heads)
        else:  # imported only when asked for, so that this file copies alone
            from wave_attention import WaveAttention
            self.attn = WaveAttention(dim, heads, grid)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):
        x = x + self.dropped(self.attn(self.norm1(x)))
        return x + self.dropped(self.mlp(self.norm2(x)))

    def dropped(self, branch):
        """Drop the residual branch for a random drop_path share of the images, rescale the rest."""
        if not self.training or self.drop_path == 0:
            return branch
        keep = torch.rand(len(branch), 1, 1, device=branch.device) >= self.drop_path
        return branch * keep / (1 - self.drop_path)


class Encoder(nn.Module):
    """ViT encoder: linear patch embedding, fixed sin-cos positions, class token, pre-norm blocks
    (with attention "wave", Wave-ViT's attention in every block)."""

    def __init__(self, image_size, patch_size, channels, dim, depth, heads, drop_path=0.0,
                 attention=None):
        super().__init__()
        self.patch_size, self.channels, self.dim = patch_size, channels, dim
        self.grid = image_size // patch_size
        self.patch_embed = nn.Linear(patch_size * patch_size * channels, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        pos_embed = sincos_pos_embed(dim, self.grid)[None]
        self.register_buffer("pos_embed", pos_embed, persistent=False)
        grid = self.grid if attention == "wave" else None
        self.blocks = nn.ModuleList(Block(dim, heads, grid=grid) for _ in range(depth))
        self.set_drop_path(drop_path)
        self.norm = nn.LayerNorm(dim)
        # MAE's init here, not in MAE: a ViT trained from scratch (finetune.py --init none) starts
        # from the very weights a pretraining with the same seed starts from.
        init_weights(self)

    def set_drop_path(self, rate):
        """Stochastic depth rising from 0 in the first block to rate in the last: deeper blocks
        are dropped more often."""
        rates = torch.linspace(0, rate, len(self.blocks)).tolist()
        for block, block_rate in zip(self.blocks, rates):
            block.drop_path = block_rate

    def patchify(self, x):
        """(N, C, H, W) -> (N, T, p*p*C), patches in row-major order."""
        n, c, p, g = len(x), self.channels, self.patch_size, self.grid
        x = x.reshape(n, c, g, p, g, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(n, g * g, p * p * c)

    def forward(self, x, ids_keep=None):
        """Tokens (N, 1 + kept, dim) of the kept patches (all patches when ids_keep is None)."""
        # embed patches, add positions
        tokens = self.patch_embed(self.patchify(x)) + self.pos_embed
        # keep the visible patches only
        if ids_keep is not None:
            index = ids_keep[..., None].expand(-1, -1, tokens.shape[-1])
            tokens = torch.gather(tokens, 1, index)
        # prepend the class token
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], 1)
        # apply the transformer blocks
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def features(self, x, pool="cls"):
        """One vector per image, no masking: the class token, or the mean of the patch tokens."""
        tokens = self(x)
        return tokens[:, 0] if pool == "cls" else tokens[:, 1:].mean(1)


class MAE(nn.Module):
    def __init__(self, image_size=32, patch_size=2, channels=3, dim=192, depth=12, heads=3,
                 decoder_dim=192, decoder_depth=4, decoder_heads=3, mask_ratio=0.75,
                 masking="random", norm_pix_loss=False, attention=None):
        super().__init__()
        if masking not in (*MASKINGS, "none"):  # mask_scores would take any other for grid
            raise ValueError(f"masking {masking!r}: one of {', '.join((*MASKINGS, 'none'))}")
        self.encoder = Encoder(image_size, patch_size, channels, dim, depth, heads,
                               attention=attention)
        self.patch_size, self.channels = patch_size, channels
        self.grid = image_size // patch_size
        self.mask_ratio, self.masking, self.norm_pix_loss = mask_ratio, masking, norm_pix_loss
        # the decoder: its own width, plain attention, a pixel prediction per patch
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        pos_embed = sincos_pos_embed(decoder_dim, self.grid)[None]
        self.register_buffer("decoder_pos_embed", pos_embed, persistent=False)
        blocks = (Block(decoder_dim, decoder_heads) for _ in range(decoder_depth))
        self.decoder_blocks = nn.ModuleList(blocks)
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, patch_size * patch_size * channels)
        nn.init.normal_(self.mask_token, std=0.02)
        for part in (self.decoder_embed, self.decoder_blocks, self.decoder_pred):
            init_weights(part)  # the encoder inits itself

    def patchify(self, x):
        return self.encoder.patchify(x)

    def unpatchify(self, patches):
        """(N, T, p*p*C) -> (N, C, H, W), the inverse of patchify."""
        n, c, p, g = len(patches), self.channels, self.patch_size, self.grid
        x = patches.reshape(n, g, g, p, p, c)
        return x.permute(0, 5, 1, 3, 2, 4).reshape(n, c, g * p, g * p)

    def mask_scores(self, n, device, generator=None):
        """A score per patch (N, T); the lowest T - round(mask_ratio * T) are kept, the rest masked.
        """
        g, t = self.grid, self.grid ** 2
        if self.masking == "random":
            return torch.rand(n, t, device=device, generator=generator)
        if self.masking == "block":
            # A smooth random field: white noise blurred on the torus. Its top scores form large
            # contiguous regions, and taking exactly the top-k keeps the count exact. Having no
            # edges, the field treats every position alike: each is kept equally often.
            noise = torch.rand(n, g, g, device=device, generator=generator)
            return blur_on_torus(noise, sigma=g / 5).flatten(1)
        # grid: keep one patch of every s x s cell (s = 2 at mask ratio 0.75), at a random offset
        s = grid_cell(self.mask_ratio)
        offset = torch.randint(0, s, (n, 2, 1, 1), device=device, generator=generator)
        idx = torch.arange(g, device=device)
        keep_row = idx[:, None] % s == offset[:, 0]
        keep_col = idx[None, :] % s == offset[:, 1]
        return (~(keep_row & keep_col)).float().flatten(1)

    def split(self, scores):
        """Mask scores (N, T) -> (ids of the kept patches, the order that restores the sequence,
        mask (N, T), 1 = masked): the round(mask_ratio * T) highest scores are masked."""
        t = scores.shape[1]
        n_keep = t - round(self.mask_ratio * t)
        ids_shuffle = torch.argsort(scores, dim=1, stable=True)  # ascending: kept first
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        mask = torch.ones_like(scores)
        mask[:, :n_keep] = 0
        return ids_shuffle[:, :n_keep], ids_restore, torch.gather(mask, 1, ids_restore)

    def decode(self, latent, ids_restore):
        """The decoder's prediction (N, T, p*p*C) of every patch from the encoder's tokens."""
        # embed tokens
        x = self.decoder_embed(latent)
        n, kept, d = x.shape[0], x.shape[1] - 1, x.shape[2]
        # append mask tokens to the sequence
        masked = self.mask_token.expand(n, ids_restore.shape[1] - kept, -1)
        patches = torch.cat([x[:, 1:], masked], 1)
        # unshuffle
        patches = torch.gather(patches, 1, ids_restore[..., None].expand(-1, -1, d))
        # add positions
        patches = patches + self.decoder_pos_embed
        # put the class token back in front
        x = torch.cat([x[:, :1], patches], 1)
        # apply the transformer blocks
        for block in self.decoder_blocks:
            x = block(x)
        # predict pixels, then remove the class token
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def loss(self, pred, target, mask):
        """Mean squared error of pred (N, T, p*p*C) on the masked patches of target (N, C, H, W)."""
        target = self.patchify(target)
        if self.norm_pix_loss:
            target = normalize_patches(target)
        loss = ((pred.float() - target) ** 2).mean(-1)  # per patch
        return (loss * mask).sum() / mask.sum()

    def forward(self, x, target, generator=None, scores=None):
        """Returns (loss, prediction (N, T, p*p*C), mask (N, T) with 1 = masked). The mask comes
        from scores (N, T) when given (distributed runs draw them for the global batch). With
        masking "pca" or "none" no patch is masked, and the loss is on every patch."""
        n, t = len(x), self.grid ** 2
        if self.masking in ("pca", "none"):  # every patch is seen, and predicted
            mask = torch.ones(n, t, device=x.device)
            every = torch.arange(t, device=x.device).expand(n, t)
            pred = self.decode(self.encoder(x), every)
        else:
            if scores is None:
                scores = self.mask_scores(n, x.device, generator)
            ids_keep, ids_restore, mask = self.split(scores)
            pred = self.decode(self.encoder(x, ids_keep), ids_restore)
        return self.loss(pred, target, mask), pred, mask


def normalize_patches(patches):
    """Each patch (..., p*p*C) to zero mean and unit variance: MAE's norm-pix-loss target."""
    mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True)
    return (patches - mean) / (var + 1e-6).sqrt()


def blur_on_torus(x, sigma):
    """x (N, g, g) convolved with a Gaussian of sigma cells, wrapping around the edges (by FFT)."""
    g = x.shape[-1]
    freq = torch.fft.fftfreq(g, device=x.device)  # cycles per cell
    rfreq = torch.fft.rfftfreq(g, device=x.device)
    gain = torch.exp(-2 * (math.pi * sigma) ** 2 * (freq[:, None] ** 2 + rfreq[None, :] ** 2))
    return torch.fft.irfft2(torch.fft.rfft2(x) * gain, s=(g, g))


def grid_cell(mask_ratio):
    """Side s of the cell that grid masking keeps one patch of: mask ratio 1 - 1/s^2, or None."""
    s = round((1 - mask_ratio) ** -0.5)
    return s if s >= 2 and abs(1 - 1 / s**2 - mask_ratio) < 1e-6 else None


def default_patch_size(image_size):
    """The divisor of the image size that gives the patch grid closest to 16 x 16."""
    divisors = [p for p in range(1, image_size + 1) if image_size % p == 0]
    grid_gap = [abs(image_size / p - 16) for p in divisors]
    return divisors[grid_gap.index(min(grid_gap))]


class Classifier(nn.Module):
    """An encoder with a linear head on its class token (or mean patch token), for fine-tuning."""

    def __init__(self, encoder, num_classes, pool="cls"):
        super().__init__()
        self.encoder, self.pool = encoder, pool
        self.head = nn.Linear(encoder.dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)  # MAE's fine-tuning head: near zero
        nn.init.zeros_(self.head.bias)

    def forward(self, x):
        return self.head(self.encoder.features(x, self.pool))
