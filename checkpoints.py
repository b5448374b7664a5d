"""What a pretraining config and checkpoint describe: the MAE built from pretrain.py's flags (its
sizes checked first), and a pretrain.py checkpoint, or a copy kept during the run, loaded and
checked.

    mae = build_model(cfg, image_shape)       # cfg: pretrain.py's flags; image_shape (C, H, W)
    ckpt = load_pretrained("runs/pretrain/ckpt.pt")
    mae = pretrained(ckpt, image_shape, path)
"""
import cli
from data import image_shape
from files import UserError, load_checkpoint
from model import MAE, grid_cell
from older import OLDER_CODE


def check_sizes(image_shape, patch_size, *widths_and_heads, attention=None):
    """A UserError unless the images are square and divisible into patches (an even grid of them for
    wave attention's DWT), and every transformer width is divisible by 4 (sin-cos positions) and by
    its number of heads."""
    _, h, w = image_shape
    if h != w or h % patch_size:
        raise UserError(f"image size {h}x{w} is not a square divisible by patch size {patch_size}")
    if attention == "wave" and h // patch_size % 2:
        raise UserError(f"wave attention needs an even patch grid for its DWT; "
                        f"{h} px / patch {patch_size} = {h // patch_size}")
    if h // patch_size > MAX_GRID:
        raise UserError(f"{h} px in patches of {patch_size} is a {h // patch_size} x "
                        f"{h // patch_size} grid; at most {MAX_GRID} x {MAX_GRID} patches (pass a "
                        "larger --patch-size)")
    for d, heads in widths_and_heads:
        if d % heads or d % 4:
            raise UserError(f"width {d} must be divisible by 4 and by its number of heads "
                            f"({heads})")


MAX_GRID = 128  # patches a side: attention over more would not fit a GPU's memory
MAX_WEIGHTS = 10**9  # 16 GB with AdamW's two moments and the gradients, in float32


def check_weights(*widths_and_depths):
    """A UserError where transformers of these (width, depth) would hold more than MAX_WEIGHTS
    weights (about 12 width^2 a block), before a byte of them is allocated."""
    weights = sum(12 * d * d * depth for d, depth in widths_and_depths)
    if weights > MAX_WEIGHTS:
        raise UserError(f"a model of about {weights:,} weights is more than this code builds "
                        f"({MAX_WEIGHTS:,}); pass a smaller --dim or --depth")


def build_model(cfg, image_shape):
    """The MAE that pretrain.py's flags (cfg) describe, for images (C, H, W); a UserError if they
    do not fit."""
    c, h, _ = image_shape
    encoder, decoder = (cfg["dim"], cfg["heads"]), (cfg["decoder_dim"], cfg["decoder_heads"])
    check_sizes(image_shape, cfg["patch_size"], encoder, decoder, attention=cfg.get("attention"))
    check_weights((cfg["dim"], cfg["depth"]), (cfg["decoder_dim"], cfg["decoder_depth"]))
    grid, cell = h // cfg["patch_size"], grid_cell(cfg["mask_ratio"])
    if cfg["masking"] == "grid" and grid % cell:
        raise UserError(f"--masking grid needs the patch grid ({grid}) divisible by {cell}")
    patches, hidden = grid * grid, round(cfg["mask_ratio"] * grid * grid)
    if cfg["masking"] in ("random", "block", "grid") and hidden in (0, patches):
        raise UserError(f"--mask-ratio {cfg['mask_ratio']:g} masks {hidden} of the {patches} "
                        "patches: the encoder would see nothing, or nothing would be left to "
                        "predict")
    noise = cfg.get("corruption") == "gaussian"  # nothing masked: the encoder sees the noisy image
    return MAE(image_size=h, patch_size=cfg["patch_size"], channels=c,
               dim=cfg["dim"], depth=cfg["depth"], heads=cfg["heads"],
               decoder_dim=cfg["decoder_dim"], decoder_depth=cfg["decoder_depth"],
               decoder_heads=cfg["decoder_heads"], mask_ratio=cfg["mask_ratio"],
               masking="none" if noise else cfg["masking"], norm_pix_loss=cfg["norm_pix_loss"],
               attention=cfg.get("attention"))


NEEDED = ("dataset", "image_size", "target", "patch_size", "dim", "depth", "heads", "decoder_dim",
          "decoder_depth", "decoder_heads", "mask_ratio")


def load_pretrained(path):
    """A pretrain.py checkpoint (a dict with model, config, ...), checked to be one; the config of
    one made by older code completed with what that code did."""
    ckpt = load_checkpoint(path)
    config = ckpt.get("config") if isinstance(ckpt, dict) else None
    if not isinstance(config, dict) or "model" not in ckpt or "mask_ratio" not in config:
        raise UserError(f"{path} is not a pretrain.py checkpoint")
    if lacking := [k for k in NEEDED if k not in config]:
        raise UserError(f"{path} is a pretrain.py checkpoint without {lacking[0]} in its config")
    log = ckpt.get("log", [])  # older code kept none
    if not (isinstance(log, list) and all(isinstance(line, dict) for line in log)):
        raise UserError(f"{path} is a pretrain.py checkpoint whose log is not one (edited?)")
    config = {k: v for k, v in OLDER_CODE.items() if k != "band_first"} | config  # a fine-tune's
    config.setdefault("image_shape", list(image_shape(config["dataset"], config["image_size"])))
    return ckpt | {"config": config}


def data_of(pre, dataset, data_dir, image_size):
    """The data an evaluation reads: each data flag given (not None), else the pretraining's own
    (pre: its config, or None): its dataset, and on that dataset its data folder and image size;
    else cli.DATA_DEFAULTS. Returns ({dataset, data_dir, image_size}, the names taken from pre)."""
    given = {"dataset": dataset, "data_dir": data_dir, "image_size": image_size}
    own = pre is not None and dataset in (None, pre["dataset"])
    taken = [k for k, v in given.items() if v is None and own and pre.get(k) is not None]
    return {k: v if v is not None else pre[k] if k in taken else cli.DATA_DEFAULTS[k]
            for k, v in given.items()}, taken


def data_note(where, taken):
    """What an evaluation's header says of data it took from the checkpoint."""
    if not taken:
        return ""
    flags = " ".join(f"--{k.replace('_', '-')} {where[k]}" for k in taken)
    return f" | the checkpoint's data: {flags}"


def take_flags(args, own):
    """Each of the checkpoint's values (own: flag name -> value) into args: a flag not given (None)
    takes it, and a flag given that contradicts it is a UserError, never silently overridden."""
    for name, value in own.items():
        given = getattr(args, name)
        if given is not None and given != value:
            shown = [f"{v:g}" if isinstance(v, float) else v for v in (given, value)]
            shown = shown if shown[0] != shown[1] else [repr(given), repr(value)]
            raise UserError(f"--{name.replace('_', '-')} {shown[0]} contradicts the checkpoint's "
                            f"{shown[1]}; leave it out to use the checkpoint's")
        setattr(args, name, value)


def pretrained(ckpt, image_shape, path):
    """The MAE of a pretrain.py checkpoint, for images of image_shape (C, H, W)."""
    cfg = ckpt["config"]
    if tuple(cfg["image_shape"]) != tuple(image_shape):
        raise UserError(f"{path} was pretrained on {'x'.join(map(str, cfg['image_shape']))} images; "
                        f"this dataset has {'x'.join(map(str, image_shape))}")
    mae = build_model(cfg, image_shape)
    try:
        mae.load_state_dict(ckpt["model"])
    except RuntimeError:
        raise UserError(f"{path} holds weights of another model than its config "
                        "describes") from None
    return mae
