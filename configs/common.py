"""Protocol helpers shared by recipes (no recipe of its own): imported next to `default`."""

# SegNet CamVid train split, share of labelled pixels per class (python -m data_pipelines.stats):
# Sky 17.54, Building 24.22, Pole 1.02, Road 32.96, Pavement 4.67, Tree 10.12, SignSymbol 1.22,
# Fence 1.17, Car 6.11, Pedestrian 0.67, Bicyclist 0.30 %.
CAMVID_CLASS_SHARES = (0.17538, 0.24215, 0.01023, 0.32960, 0.04671, 0.10124, 0.01221,
                       0.01173, 0.06107, 0.00666, 0.00304)


def sqrt_median_frequency_weights(shares):
    """sqrt(median share / share) per class, scaled to average 1 over the pixels: the square
    root of SegNet's median-frequency balancing, which lifts thin classes (CamVid's Pole
    ×2.1, Bicyclist ×3.9 relative to Pavement) without SegNet's 15× swing."""
    median = sorted(shares)[len(shares) // 2]
    raw = [(median / s) ** 0.5 for s in shares]
    mean = sum(w * s for w, s in zip(raw, shares)) / sum(shares)
    return tuple(round(w / mean, 4) for w in raw)


def camvid_cpu(config, *, steps=2400, batch=8, class_weighted=True):
    """The from-scratch CamVid protocol sized for a 2-core CPU: whole 360x480 frames with the
    recipe's augmentation, optimizer and loss, global batch 8 and 2,400 steps (52 epochs,
    about 90 minutes for DDRNet-23-slim), val evaluations every 300 steps, square-root
    median-frequency class weights. `--config.dataset.train_split=trainval` is the final
    protocol once the settings are chosen on val."""
    config.dataset.name = "camvid"
    config.data.resize_long_edge = 0
    config.data.crop_size = (360, 480)
    config.global_batch_size = batch
    config.eval_batch_size = 8
    config.num_train_steps = steps
    if class_weighted:
        config.loss.class_weights = sqrt_median_frequency_weights(CAMVID_CLASS_SHARES)
    config.log_every_steps = 25
    config.eval_every_steps = 300
    config.checkpoint_every_steps = 300
    return config


VARIANTS = {"cpu": camvid_cpu}


def variant(config, name, recipe):
    """`config` with the protocol `name` (`--config=configs/<recipe>.py:<name>`) applied."""
    if not name:
        return config
    if name not in VARIANTS:
        raise ValueError(f"configs/{recipe}.py:{name}: unknown variant; choose one of "
                         f"{', '.join(VARIANTS)} (or none)")
    return VARIANTS[name](config)
