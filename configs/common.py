"""Dataset, schedule and protocol helpers shared by the recipes, imported next to `default`.

Recipes import only `default` and this module: each states its own model, loss and optimizer,
so one file reads as the whole recipe.
"""

from configs import default

CITYSCAPES_TRAIN_IMAGES = 2975
CAMVID_TRAIN_IMAGES = 367
# DDRNet/HRNet's Cityscapes class weights (inverse log frequency), as the official trainers.
CITYSCAPES_CLASS_WEIGHTS = (0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489,
                            0.8786, 1.0023, 0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955,
                            1.0865, 1.1529, 1.0507)
# FC-HarDNet / FASSD-Net read BGR frames normalised with the ImageNet statistics in BGR order.
BGR_MEAN = tuple(reversed(default.IMAGENET_MEAN))
BGR_STD = tuple(reversed(default.IMAGENET_STD))


def cityscapes(config, *, crop=(1024, 1024), global_batch_size=12, epochs=484):
    """Cityscapes fine: crops with scale 0.5-2.0 and flips, the schedule length in epochs of
    the 2,975 training frames, and the recipes' logging cadence."""
    config.dataset.name = "cityscapes"
    config.dataset.root = "data/cityscapes"
    config.dataset.eval_split = "val"
    config.data.crop_size = crop
    config.data.scale_range = (0.5, 2.0)
    config.global_batch_size = global_batch_size
    config.eval_batch_size = 8
    config.num_train_steps = epochs * (CITYSCAPES_TRAIN_IMAGES // global_batch_size)
    config.log_every_steps = 100
    config.eval_every_steps = 5000
    config.checkpoint_every_steps = 1000
    return config


def camvid(config, *, crop=(360, 480), global_batch_size=16, steps=20000):
    """CamVid (SegNet 11-class copy, 480x360 frames) with scale 0.5-2.0 and flips."""
    config.dataset.name = "camvid"
    config.dataset.root = "data/camvid"
    config.data.crop_size = crop
    config.data.scale_range = (0.5, 2.0)
    config.global_batch_size = global_batch_size
    config.eval_batch_size = 8
    config.num_train_steps = steps
    config.log_every_steps = 50
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 1000
    return config


def bgr_imagenet_input(config):
    """FC-HarDNet / FASSD-Net input: BGR frames with the ImageNet statistics in BGR order."""
    config.data.mean = BGR_MEAN
    config.data.std = BGR_STD
    config.data.channel_order = "bgr"
    return config


def adam_cosine(config, learning_rate, *, end_learning_rate, weight_decay):
    """Adam (PyTorch's betas, coupled weight decay) with a cosine decay, no warm-up: the
    MSFNet/SwiftNet schedule."""
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = learning_rate
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.weight_decay = weight_decay
    config.optimizer.schedule = "cosine"
    config.optimizer.end_learning_rate = end_learning_rate
    config.optimizer.warmup_steps = 0
    return config


def sgd_poly(config, learning_rate, *, momentum=0.9, weight_decay=5e-4, power=0.9):
    """SGD with coupled weight decay and a poly decay to 0 per step, as every official
    CNN segmentation trainer here uses."""
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = learning_rate
    config.optimizer.momentum = momentum
    config.optimizer.nesterov = False
    config.optimizer.weight_decay = weight_decay
    config.optimizer.schedule = "poly"
    config.optimizer.power = power
    config.optimizer.warmup_steps = 0
    return config

# SegNet CamVid train split, share of labelled pixels per class (python -m data_pipelines.stats):
# Sky 17.54, Building 24.22, Pole 1.02, Road 32.96, Pavement 4.67, Tree 10.12, SignSymbol 1.22,
# Fence 1.17, Car 6.11, Pedestrian 0.67, Bicyclist 0.30 %.
CAMVID_CLASS_SHARES = (0.17538, 0.24215, 0.01023, 0.32960, 0.04671, 0.10124, 0.01221,
                       0.01173, 0.06107, 0.00666, 0.00304)


def hardnet_bootstrap_loss(config):
    """FC-HarDNet's bootstrapped_cross_entropy2d, which FASSD-Net keeps: per image, the pixel
    losses above 0.3, at least the 4096 largest; no class weights, no auxiliary head."""
    config.loss.name = "bootstrap"
    config.loss.bootstrap.thresh = 0.3
    config.loss.bootstrap.min_kept = 4096
    config.loss.class_weights = ()
    config.loss.aux.weight = 0.0
    return config


def hardnet_cpu_training(config):
    """HarDNet-family train steps on CPU run faster on XLA's Eigen convolutions than on its
    default YNNPACK ones (per step of 8 × 360×480 on 2 cores: FASSD-Net 3.9 -> 2.5 s,
    FC-HarDNet-70 4.0 -> 2.8 s, FASSD-Net-L2 1.0 -> 0.74 s); other models' do not
    (segjax/xla_cpu.py)."""
    config.cpu_kernels.train = "eigen"
    return config


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
