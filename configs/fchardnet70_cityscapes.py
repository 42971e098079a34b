"""FC-HarDNet-70 on Cityscapes fine: the official recipe (PingoLH/FCHarDNet configs/hardnet.yml),
which FASSD-Net reuses unchanged (see configs/fassdnet_cityscapes.py).

python run.py --config=configs/fchardnet70_cityscapes.py \
    --config.dataset.root=/path/to/cityscapes --workdir=runs/fchardnet70_cityscapes
"""

from configs.fassdnet_cityscapes import hardnet_cityscapes


def get_config():
    return hardnet_cityscapes("fchardnet70").lock()
