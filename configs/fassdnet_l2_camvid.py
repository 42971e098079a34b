"""FASSD-Net-L2 on CamVid (SegNet 11-class layout, 480x360 frames): configs/fassdnet_camvid.py
with the L2 model.

python run.py --config=configs/fassdnet_l2_camvid.py --config.dataset.root=/path/to/camvid \
    --workdir=DIR
"""

from configs.fassdnet_camvid import camvid


def get_config(variant=None):
    return camvid("fassdnet_l2", variant, alpha=2)
