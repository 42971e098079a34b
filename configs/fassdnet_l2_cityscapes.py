"""FASSD-Net-L2 on Cityscapes fine: FASSD-Net's recipe; stride-2 stem convs 0 and 1 and one
3x3 conv per decoder stage.

python run.py --config=configs/fassdnet_l2_cityscapes.py \
    --config.dataset.root=/path/to/cityscapes --workdir=runs/fassdnet_l2_cityscapes
"""

from configs.fassdnet_cityscapes import hardnet_cityscapes


def get_config():
    return hardnet_cityscapes("fassdnet_l2", alpha=2).lock()
