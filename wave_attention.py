"""Wave-ViT's attention (Yao et al., ECCV 2022) for a ViT's patch grid, with a one-level Haar
wavelet transform written in torch (fixed 2 x 2 kernels, no wavelet package).

    bands = dwt(x)          # (N, C, H, W) -> (N, 4C, H/2, W/2); idwt(bands) == x
    attn = WaveAttention(dim, heads, grid)   # model.Block's attention with --attention wave
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

# Haar filters of a 2 x 2 block (LL, LH, HL, HH): orthonormal, so the inverse DWT is the transposed
# convolution.
HAAR = torch.tensor([[[1.0, 1.0], [1.0, 1.0]],      # LL
                     [[1.0, -1.0], [1.0, -1.0]],    # LH
                     [[1.0, 1.0], [-1.0, -1.0]],    # HL
                     [[1.0, -1.0], [-1.0, 1.0]]]) / 2  # HH


def dwt(x, haar=HAAR):
    """One-level Haar DWT: (N, C, H, W) -> (N, 4C, H/2, W/2), the four sub-bands of each channel in
    turn. haar: the filters, best already on x's device (a copy to a GPU makes the host wait)."""
    return F.conv2d(x, haar.to(x)[:, None].repeat(x.shape[1], 1, 1, 1), stride=2, groups=x.shape[1])


def idwt(y, haar=HAAR):
    """The inverse of dwt: (N, 4C, H/2, W/2) -> (N, C, H, W)."""
    c = y.shape[1] // 4
    return F.conv_transpose2d(y, haar.to(y)[:, None].repeat(c, 1, 1, 1), stride=2, groups=c)


class WaveAttention(nn.Module):
    """Wave-ViT's attention (Yao et al. 2022) over a grid x grid patch grid: the tokens, reduced to
    dim/4 channels, go through a Haar DWT and a 3x3 conv to a half-resolution map; keys and values
    come from it, and its inverse DWT is a full-resolution branch beside the attention output."""

    def __init__(self, dim, heads, grid):
        super().__init__()
        self.heads, self.grid = heads, grid
        self.q = nn.Linear(dim, dim)
        self.reduce = nn.Sequential(nn.Conv2d(dim, dim // 4, 1), nn.BatchNorm2d(dim // 4),
                                    nn.ReLU())
        self.filter = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.BatchNorm2d(dim),
                                    nn.ReLU())
        self.kv = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim))
        self.proj = nn.Linear(dim + dim // 4, dim)
        # the filters move with the module to its device, once; not saved: they are fixed
        self.register_buffer("haar", HAAR.clone(), persistent=False)

    def forward(self, x):
        """x: the class token and every patch token (N, 1 + grid^2, dim). The grid must be whole:
        masked pretraining, whose hidden patches would leave zeros on it for BatchNorm to learn, is
        refused."""
        n, t, d = x.shape
        patches = x[:, 1:].transpose(1, 2).reshape(n, d, self.grid, self.grid)
        waves = self.filter(dwt(self.reduce(patches), self.haar))
        kv = self.kv(waves.flatten(2).transpose(1, 2)).view(n, -1, 2, self.heads, d // self.heads)
        q = self.q(x).view(n, t, self.heads, d // self.heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, *kv.permute(2, 0, 3, 1, 4))
        out = out.transpose(1, 2).reshape(n, t, d)
        detail = idwt(waves, self.haar).flatten(2).transpose(1, 2)  # (N, grid^2, d/4)
        # the class token has no place on the grid
        detail = torch.cat([detail.new_zeros(n, 1, d // 4), detail], 1)
        return self.proj(torch.cat([out, detail], -1))
