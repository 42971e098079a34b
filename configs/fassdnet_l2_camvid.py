"""FASSD-Net-L2 on CamVid (SegNet 11-class layout, 480x360 frames): configs/fassdnet_camvid.py
with the L2 model.

python run.py --config=configs/fassdnet_l2_camvid.py --config.dataset.root=/path/to/camvid \
    --workdir=DIR
"""

import ml_collections

from configs import common, default


def get_config(variant=None):
    """`variant="cpu"`: the from-scratch 2-core CPU protocol (configs/common.py)."""
    config = common.camvid(default.get_config(), crop=(360, 480), global_batch_size=16,
                           steps=20000)
    config.model.name = "fassdnet_l2"
    config.model.kwargs = ml_collections.ConfigDict({"alpha": 2})
    common.bgr_imagenet_input(config)
    common.sgd_poly(config, 0.02)
    common.hardnet_bootstrap_loss(config)
    common.hardnet_cpu_training(config)
    return common.variant(config, variant, "fassdnet_l2_camvid").lock()
