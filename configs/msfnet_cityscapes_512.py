"""MSFNet on Cityscapes at 512×1024 (J = 4 SAP poolings): the paper's fast model.

python run.py --config=configs/msfnet_cityscapes_512.py \
    --config.dataset.root=/path/to/cityscapes --workdir=DIR

The paper states only the input size and J = 4. Frames are halved to 512×1024
(`data.resize_long_edge`), for training and evaluation alike, and the 1024×2048 recipe is
kept otherwise (configs/msfnet_cityscapes.py). The train crop is a gap: the whole halved
frame, 512×1024, is used here.
"""

import ml_collections

from configs import common, default


def get_config():
    config = common.cityscapes(default.get_config(), crop=(512, 1024), global_batch_size=12,
                               epochs=350)
    config.data.resize_long_edge = 1024
    config.model.name = "msfnet"
    config.model.kwargs = ml_collections.ConfigDict({
        "num_poolings": 4,
        "channels": 256,
        "stage_merge": "concat",  # concat | add
        "pooling": "avg",  # avg | max
        "class_boundary_supervision": True,
        "num_branches": 0,  # 0: two with CBS, one without
    })
    # Plain CE on the output and 1·CE on the class boundaries at 1/8 (ε = 1).
    config.loss.name = "ce"
    config.loss.class_weights = ()
    config.loss.aux.weight = 0.0
    config.loss.cbs.weight = 1.0
    config.loss.cbs.epsilon = 1
    config.loss.cbs.label_mode = "extra_class"
    common.adam_cosine(config, 1e-4, end_learning_rate=1e-6, weight_decay=2.5e-5)
    return config.lock()
