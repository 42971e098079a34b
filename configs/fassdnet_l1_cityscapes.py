"""FASSD-Net-L1 on Cityscapes fine: FASSD-Net's recipe; the stem's first conv has stride 3.

python run.py --config=configs/fassdnet_l1_cityscapes.py \
    --config.dataset.root=/path/to/cityscapes --workdir=runs/fassdnet_l1_cityscapes
"""

import ml_collections

from configs import common, default

OFFICIAL_STEPS = 90_000
OFFICIAL_BATCH = 16


def get_config():
    config = common.cityscapes(default.get_config(), crop=(1024, 1024),
                               global_batch_size=OFFICIAL_BATCH)
    config.num_train_steps = OFFICIAL_STEPS
    config.model.name = "fassdnet_l1"
    config.model.kwargs = ml_collections.ConfigDict({"alpha": 2})
    common.bgr_imagenet_input(config)
    common.sgd_poly(config, 0.02)
    # FC-HarDNet's bootstrapped_cross_entropy2d: per image, the pixel losses above 0.3, at
    # least the 4096 largest; no class weights, no auxiliary head.
    config.loss.name = "bootstrap"
    config.loss.bootstrap.thresh = 0.3
    config.loss.bootstrap.min_kept = 4096
    config.loss.class_weights = ()
    config.loss.aux.weight = 0.0
    return config.lock()
