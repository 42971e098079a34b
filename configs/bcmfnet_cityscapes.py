"""BCMFNet on Cityscapes fine: DDRNet-23-slim with LMFM, trained with OHEM + flip BCL.

python run.py --config=configs/bcmfnet_cityscapes.py \
    --config.dataset.root=/path/to/cityscapes --workdir=DIR

The paper: 1024x1024 crops, SGD momentum 0.9, weight decay 5e-4, batch 8; its LR of 0.1 is ten
times DDRNet's and likely a typo, so this uses DDRNet's 0.01 (the paper's value is
`--config.optimizer.learning_rate=0.1`). Schedule and length follow DDRNet (poly 0.9, 484
epochs), which the paper does not state.
"""

from configs import default
from configs.ddrnet23slim_cityscapes import cityscapes


def bcmfnet(config):
    config.model.name = "bcmfnet"
    config.model.kwargs.lmfm_connection = "interval"
    config.model.kwargs.lmfm_p4_kernel = 1
    config.loss.bcl_weight = 1.0
    return config


def get_config():
    config = bcmfnet(cityscapes(default.get_config(), global_batch_size=8))
    config.optimizer.learning_rate = 0.01
    return config.lock()
