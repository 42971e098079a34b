"""FASSD-Net on CamVid (SegNet 11-class layout, 480x360 frames).

python run.py --config=configs/fassdnet_camvid.py --config.dataset.root=/path/to/camvid \
    --workdir=DIR

FASSD-Net publishes no CamVid recipe; this is its Cityscapes one (SGD 0.02, poly 0.9,
bootstrapped CE, BGR input) on whole 360x480 frames, with the length of the library's other
CamVid recipes. The models take any size whose 1/32 map is at least 1 pixel per side.
"""

import ml_collections

from configs import common, default


def get_config(variant=None):
    """`variant="cpu"`: the from-scratch 2-core CPU protocol (configs/common.py)."""
    config = common.camvid(default.get_config(), crop=(360, 480), global_batch_size=16,
                           steps=20000)
    config.model.name = "fassdnet"
    config.model.kwargs = ml_collections.ConfigDict({"alpha": 2})
    common.bgr_imagenet_input(config)
    common.sgd_poly(config, 0.02)
    common.hardnet_bootstrap_loss(config)
    common.hardnet_cpu_training(config)
    return common.variant(config, variant, "fassdnet_camvid").lock()
