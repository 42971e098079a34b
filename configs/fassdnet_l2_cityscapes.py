"""FASSD-Net-L2 on Cityscapes fine: FASSD-Net's recipe; stride-2 stem convs 0 and 1 and one
3x3 conv per decoder stage.

python run.py --config=configs/fassdnet_l2_cityscapes.py \
    --config.dataset.root=/path/to/cityscapes --workdir=runs/fassdnet_l2_cityscapes
"""

import ml_collections

from configs import common, default

OFFICIAL_STEPS = 90_000
OFFICIAL_BATCH = 16


def get_config():
    config = common.cityscapes(default.get_config(), crop=(1024, 1024),
                               global_batch_size=OFFICIAL_BATCH)
    config.num_train_steps = OFFICIAL_STEPS
    config.model.name = "fassdnet_l2"
    config.model.kwargs = ml_collections.ConfigDict({"alpha": 2})
    common.bgr_imagenet_input(config)
    common.sgd_poly(config, 0.02)
    common.hardnet_bootstrap_loss(config)
    common.hardnet_cpu_training(config)
    return config.lock()
