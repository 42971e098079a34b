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
    # FC-HarDNet's bootstrapped_cross_entropy2d: per image, the pixel losses above 0.3, at
    # least the 4096 largest; no class weights, no auxiliary head.
    config.loss.name = "bootstrap"
    config.loss.bootstrap.thresh = 0.3
    config.loss.bootstrap.min_kept = 4096
    config.loss.class_weights = ()
    config.loss.aux.weight = 0.0
    return common.variant(config, variant, "fassdnet_l2_camvid").lock()
