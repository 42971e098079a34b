"""Defaults shared by every model x dataset config; each file overrides what its recipe says."""

import ml_collections

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.model = ml_collections.ConfigDict()
    config.model.name = "ddrnet23_slim"
    # Constructor arguments of the registry model; `--config.model.kwargs.aux_head=False`.
    config.model.kwargs = ml_collections.ConfigDict({"aux_head": True})

    config.dataset = ml_collections.ConfigDict()
    config.dataset.name = "synthetic"
    config.dataset.root = ""
    config.dataset.train_split = "train"
    config.dataset.eval_split = "val"
    # Only read by the synthetic source.
    config.dataset.image_size = (256, 512)
    config.dataset.num_train = 2000
    config.dataset.num_eval = 50
    config.dataset.seed = 0  # content seed of the synthetic scenes (eval uses seed + 1)

    config.data = ml_collections.ConfigDict()
    config.data.crop_size = (256, 256)
    config.data.scale_range = (0.5, 2.0)
    config.data.hflip = True
    config.data.mean = IMAGENET_MEAN
    config.data.std = IMAGENET_STD
    config.data.channel_order = "rgb"
    config.data.num_workers = 0
    config.data.num_threads = 2
    config.data.prefetch_buffer_size = 4

    # Global batch sizes: split over all devices of all processes.
    config.global_batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = 1000

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "sgd"  # sgd | adam | adamw
    config.optimizer.learning_rate = 0.01
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = False
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    # PyTorch-style coupled L2 for sgd/adam; decoupled for adamw.
    config.optimizer.weight_decay = 5e-4
    config.optimizer.schedule = "poly"  # poly | cosine | constant
    config.optimizer.power = 0.9
    config.optimizer.end_learning_rate = 0.0
    config.optimizer.warmup_steps = 0
    config.optimizer.warmup_init_fraction = 0.1

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "ohem"  # ce | ohem
    config.loss.ohem_thresh = 0.9
    # DDRNet keeps at least 131072 pixels per GPU batch of 6 images; the train step sees the
    # global batch, so min_kept is scaled by global_batch_size / ohem_min_kept_batch.
    config.loss.ohem_min_kept = 131072
    config.loss.ohem_min_kept_batch = 6
    config.loss.class_weights = ()
    config.loss.aux_weight = 0.4
    config.loss.ignore_label = 255
    # Flip Boundary Corrected Loss (BCMFNet; segjax/bcl.py). Weight 0 = off.
    config.loss.bcl_weight = 0.0  # λ
    config.loss.bcl_step = 4  # flip step s, label pixels
    config.loss.bcl_alpha = 0.5  # row-flip weight
    config.loss.bcl_beta = 0.5  # column-flip weight
    config.loss.bcl_nms_window = 3  # k; 1 turns NMS off
    config.loss.bcl_tau = 0.357  # loss threshold, -ln 0.7
    config.loss.bcl_min_kept_fraction = 0.01  # ρ_min of the valid pixels, per image
    config.loss.bcl_random_phase = True
    config.loss.bcl_target = "orig"  # orig | flipped
    config.loss.bcl_replaces_ohem = False  # main head: plain CE + BCL instead of OHEM + BCL

    config.dtype = "float32"  # compute dtype; params and BatchNorm statistics stay float32

    config.mesh = ml_collections.ConfigDict()
    config.mesh.shape = (-1,)
    config.mesh.axes = ("data",)

    config.log_every_steps = 50
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 500
    config.keep_checkpoints = 3
    config.async_checkpointing = True
    config.num_eval_images_to_log = 4
    return config

