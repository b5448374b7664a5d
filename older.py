"""Files that older code wrote, read as that code ran: one home for what it did differently, so
that a run, a checkpoint, a log or a results.json from before a change is neither refused for
lacking a key nor mistaken for today's."""

# Keys a run records only where they change what it trains on or monitors, and what older code,
# which did not record them, did: a run under way that lacks one was started by code that did
# otherwise.
CHANGED_TRAINING = {"pca_fit": "images",  # an augmented pretraining's PCA (target, mask, monitor)
                    "band_first": False}  # an augmented band fine-tune: the band of each crop
# Config keys older code did not record, and what it did without them: a run's config, a
# checkpoint's, a results.json's, read as that code ran it.
OLDER_CODE = {"masking": "random", "pca_mask_share": 0.75, "norm_pix_loss": False,
              "attention": None, "corruption": None, "sigma": None, "knn_test": 1000,
              "subset": None,
              **CHANGED_TRAINING}

# Keys older code recorded, and the keys that replaced them: linprobe.py's ckpt_sha1 hashed the
# checkpoint file's bytes, which a checkpoint made again never reproduces; weights_sha1 hashed its
# config too, which gains keys as the code does; tensors_sha1 hashes its tensors alone. A config
# recorded with an old key is compared without either.
REPLACED = {"ckpt_sha1": "weights_sha1", "weights_sha1": "tensors_sha1"}


def as_older_code_ran(cfg, keys):
    """cfg with those of keys it lacks whose value older code is known to have used
    (OLDER_CODE)."""
    older = {k: k.removeprefix("pretrain.") for k in keys - cfg.keys()}
    return {k: OLDER_CODE[name] for k, name in older.items() if name in OLDER_CODE} | cfg


# What pretrain.py's band monitor measured, in logs written before each line named it (the masked
# patches only, whose cut edges credit a model with bands it cannot know), and the name of the
# norm-pix figures withdrawn since (monitor.band_monitor says why).
OLD_EXPLAINED_BY = "masked patches only (before issue 21; leaks across bands)"
WITHDRAWN = ("withdrawn: norm-pix figures made pixels with the hidden patches' own means and "
             "scales, which credited the model with bands it did not know")


# A norm-pix run's trivial guess (trivial_loss) was the mean image normalised, which scored above
# even a guess of zeros, until the fix whose log lines named their band monitor thus (and since, as
# report.NORM_PIX_EXPLAINED_BY); the lines from before name none, the plain one, or WITHDRAWN.
NORM_PIX_TRIVIAL_FIXED_BY = ("the whole target, each patch guessed while hidden, against each "
                             "patch flat at its own mean (norm-pix loss)")


def measured_as(log):
    """What a log line's band monitor measured, named; lines that predate a fix named as such."""
    return log.get("explained_by", OLD_EXPLAINED_BY)


def cuda_rng_state(saved):
    """A checkpoint's CUDA generator state. Older code kept one per GPU the process saw: the first
    is the one it drew on (rank 0's), and a machine with fewer GPUs had no place for the others."""
    return saved[0] if isinstance(saved, list) else saved


def checkpoint_log(ckpt, read_log):
    """The log of the epochs a checkpoint holds; older checkpoints held none: the lines of the log
    file (read_log()) up to it."""
    if "log" in ckpt:
        return ckpt["log"]
    return [line for line in read_log() if line["epoch"] <= ckpt["epoch"]]
