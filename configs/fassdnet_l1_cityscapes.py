"""FASSD-Net-L1 on Cityscapes fine: FASSD-Net's recipe; the stem's first conv has stride 3.

python run.py --config=configs/fassdnet_l1_cityscapes.py \
    --config.dataset.root=/path/to/cityscapes --workdir=runs/fassdnet_l1_cityscapes
"""

from configs.fassdnet_cityscapes import hardnet_cityscapes


def get_config():
    return hardnet_cityscapes("fassdnet_l1", alpha=2).lock()
