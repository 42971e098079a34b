"""MSFNet on Cityscapes at 512×1024 (J = 4 SAP poolings): the paper's fast model.

python run.py --config=configs/msfnet_cityscapes_512.py \
    --config.dataset.root=/path/to/cityscapes --workdir=DIR

The paper states only the input size and J = 4. Frames are halved to 512×1024
(`data.resize_long_edge`), for training and evaluation alike, and the 1024×2048 recipe is
kept otherwise (configs/msfnet_cityscapes.py). The train crop is a gap: the whole halved
frame, 512×1024, is used here.
"""

from configs import default, msfnet_cityscapes
from configs.ddrnet23slim_cityscapes import cityscapes


def get_config():
    config = cityscapes(default.get_config(), crop=(512, 1024), global_batch_size=12,
                        epochs=350)
    config.data.resize_long_edge = 1024
    return msfnet_cityscapes.msfnet(config, num_poolings=4).lock()
