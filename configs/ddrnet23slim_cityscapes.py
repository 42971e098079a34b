"""DDRNet-23-slim on Cityscapes fine: the official recipe (chenjun2hao/HRNet-style trainer).

python run.py --config=configs/ddrnet23slim_cityscapes.py \
    --config.dataset.root=/path/to/cityscapes --workdir=DIR
"""

from configs import default

CITYSCAPES_TRAIN_IMAGES = 2975
# DDRNet's Cityscapes class weights (trainId order), used by its OHEM loss.
CITYSCAPES_CLASS_WEIGHTS = (0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489,
                            0.8786, 1.0023, 0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955,
                            1.0865, 1.1529, 1.0507)


def cityscapes(config, *, crop=(1024, 1024), global_batch_size=12, epochs=484):
    """Dataset, crop and schedule length shared by the Cityscapes recipes."""
    config.dataset.name = "cityscapes"
    config.dataset.root = "data/cityscapes"
    config.dataset.eval_split = "val"
    config.data.crop_size = crop
    config.data.scale_range = (0.5, 2.0)
    config.global_batch_size = global_batch_size
    config.eval_batch_size = 8
    config.num_train_steps = epochs * (CITYSCAPES_TRAIN_IMAGES // global_batch_size)
    # HRNet's OhemCrossEntropy (DDRNet's trainer); the DDRNet recipe below adds its per-GPU
    # scope, BCMFNet keeps one selection over its batch of 8 (its GPU split is not published).
    config.loss.name = "ohem"
    config.loss.ohem_thresh = 0.9
    config.loss.ohem_min_kept = 131072
    config.loss.ohem_min_kept_batch = 6
    config.loss.class_weights = CITYSCAPES_CLASS_WEIGHTS
    config.loss.aux_weight = 0.4
    config.optimizer.name = "sgd"
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 5e-4
    config.optimizer.schedule = "poly"
    config.optimizer.power = 0.9
    config.log_every_steps = 100
    config.eval_every_steps = 5000
    config.checkpoint_every_steps = 1000
    return config


def get_config():
    config = cityscapes(default.get_config())
    config.model.name = "ddrnet23_slim"
    config.optimizer.learning_rate = 0.01
    # HRNet's OhemCrossEntropy._ohem_forward on each GPU's batch of 6 (2 x 6 = 12), both heads
    # resized to the label size (bilinear, align_corners=False), weighted 1.0 / 0.4.
    config.loss.ohem_scope = "group"
    return config.lock()
