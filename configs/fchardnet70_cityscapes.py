"""FC-HarDNet-70 on Cityscapes fine: the official recipe (PingoLH/FCHarDNet configs/hardnet.yml),
which FASSD-Net reuses unchanged (see configs/fassdnet_cityscapes.py).

python run.py --config=configs/fchardnet70_cityscapes.py \
    --config.dataset.root=/path/to/cityscapes --workdir=runs/fchardnet70_cityscapes
"""

import ml_collections

from configs import common, default

OFFICIAL_STEPS = 90_000
OFFICIAL_BATCH = 16


def get_config():
    config = common.cityscapes(default.get_config(), crop=(1024, 1024),
                               global_batch_size=OFFICIAL_BATCH)
    config.num_train_steps = OFFICIAL_STEPS
    config.model.name = "fchardnet70"
    config.model.kwargs = ml_collections.ConfigDict({})
    common.bgr_imagenet_input(config)
    common.sgd_poly(config, 0.02)
    common.hardnet_bootstrap_loss(config)
    common.hardnet_cpu_training(config)
    return config.lock()
