"""FASSD-Net on CamVid (SegNet 11-class layout, 480x360 frames).

python run.py --config=configs/fassdnet_camvid.py --config.dataset.root=/path/to/camvid \
    --workdir=DIR

FASSD-Net publishes no CamVid recipe; this is its Cityscapes one (SGD 0.02, poly 0.9,
bootstrapped CE, BGR input) on whole 360x480 frames, with the length of the library's other
CamVid recipes. The models take any size whose 1/32 map is at least 1 pixel per side.
"""

from configs import common, ddrnet23slim_camvid
from configs.fassdnet_cityscapes import hardnet_recipe


def camvid(model_name, variant=None, **model_kwargs):
    """`variant="cpu"`: the from-scratch 2-core CPU protocol (configs/common.py)."""
    config = ddrnet23slim_camvid.get_config()
    with config.unlocked():
        config = hardnet_recipe(config, model_name, **model_kwargs)
        config = common.variant(config, variant, f"{model_name}_camvid")
    return config


def get_config(variant=None):
    return camvid("fassdnet", variant, alpha=2)
