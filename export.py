"""Export a pretrained encoder as a timm VisionTransformer: its state dict and the arguments that
rebuild it, in one file.

    python export.py runs/pretrain/ckpt.pt encoder-timm.pt

The ViT is the same network under timm's names: the patch embedding as the equivalent
convolution, the fixed sin-cos positions as timm's position embedding (the class token's slot
zero: this encoder adds no position to it), the blocks' layers renamed, LayerNorm's eps kept
(1e-5, where timm's default is 1e-6). The model's output is the class token's feature,
Encoder.features(x); it takes images in [0, 1], unnormalised, as this project's encoder does,
and the file's pretrained_cfg says so (input size, mean 0, std 1, the resize this project's
reader makes), so that timm's own pipeline (resolve_data_config, create_transform) feeds it
right. timm is not needed here, only where the file is loaded."""
import os

import torch

import cli
import files
from checkpoints import load_pretrained, pretrained
from outfolder import claim_file
from report import target_name

LAYERNORM_EPS = 1e-5  # torch.nn.LayerNorm's default, which model.py's layers use

LOAD = ('import functools, timm, torch; export = torch.load("{path}", weights_only=True)\n'
        'vit = timm.models.VisionTransformer(**export["args"], norm_layer=functools.partial('
        'torch.nn.LayerNorm, eps=export["layernorm_eps"])); '
        'vit.load_state_dict(export["state_dict"]); vit.pretrained_cfg = export["pretrained_cfg"]')


def timm_args(cfg):
    """VisionTransformer's arguments for the encoder of a pretraining config: no head (the class
    token's feature is the output), plain attention, MLP ratio 4, biases everywhere."""
    channels, size, _ = cfg["image_shape"]
    return {"img_size": size, "patch_size": cfg["patch_size"], "in_chans": channels,
            "num_classes": 0, "global_pool": "token", "embed_dim": cfg["dim"],
            "depth": cfg["depth"], "num_heads": cfg["heads"], "mlp_ratio": 4.0, "qkv_bias": True,
            "class_token": True, "no_embed_class": False}


def pretrained_cfg(cfg):
    """What timm's data pipeline needs to feed the encoder: its input size, pixels in [0, 1] (mean
    0, std 1), resized on the shorter side with bilinear interpolation and centre-cropped whole
    (crop_pct 1), as data.read_image does."""
    channels = cfg["image_shape"][0]
    return {"input_size": tuple(cfg["image_shape"]), "mean": (0.0,) * channels,
            "std": (1.0,) * channels, "interpolation": "bilinear", "crop_pct": 1.0,
            "num_classes": 0}


def timm_state_dict(encoder):
    """The encoder's weights under timm's names and shapes."""
    p, c, dim = encoder.patch_size, encoder.channels, encoder.dim
    state = {}
    # a linear map of each patch's (row, column, channel) pixels is a p x p convolution of stride p
    conv = encoder.patch_embed.weight.view(dim, p, p, c).permute(0, 3, 1, 2)  # (out, C, p, p)
    state["patch_embed.proj.weight"] = conv
    state["patch_embed.proj.bias"] = encoder.patch_embed.bias
    state["cls_token"] = encoder.cls_token
    # timm adds its position embedding to the class token too: that slot is zero here
    state["pos_embed"] = torch.cat([torch.zeros(1, 1, dim), encoder.pos_embed], 1)
    renamed = {"mlp.0.": "mlp.fc1.", "mlp.2.": "mlp.fc2."}
    for name, t in encoder.state_dict().items():
        if name.startswith(("blocks.", "norm.")):
            for ours, theirs in renamed.items():
                name = name.replace(ours, theirs)
            state[name] = t
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


def main():
    p = cli.Parser(description=__doc__.splitlines()[0])
    p.add_argument("ckpt", type=cli.path,
                   help="a pretrain.py checkpoint, or a copy kept by --keep-epochs")
    p.add_argument("out", type=cli.path, help="the file to write (a .pt)")
    args = p.parse_args()
    out = claim_file(args.out, inputs=[args.ckpt])
    ckpt = load_pretrained(args.ckpt)
    cfg = ckpt["config"]
    if cfg.get("attention"):
        raise files.UserError(f"{args.ckpt} uses {cfg['attention']} attention, which timm's "
                              "VisionTransformer does not have")
    encoder = pretrained(ckpt, cfg["image_shape"], args.ckpt).encoder
    export = {"state_dict": timm_state_dict(encoder), "args": timm_args(cfg),
              "pretrained_cfg": pretrained_cfg(cfg), "layernorm_eps": LAYERNORM_EPS,
              "pretrain_config": cfg, "epoch": ckpt["epoch"], "step": ckpt.get("step", 0)}
    files.save_atomic(export, out)
    trained = f"epoch {ckpt['epoch']}" + (f" + {ckpt['step']} steps" if ckpt.get("step") else "")
    print(f"wrote {out}: the encoder of {args.ckpt} ({target_name(cfg)}, {trained}) "
          f"as a timm VisionTransformer; load it with\n{LOAD.format(path=os.path.abspath(out))}")


if __name__ == "__main__":
    cli.main_guard(main, resumable=False)
