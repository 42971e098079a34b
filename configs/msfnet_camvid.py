"""MSFNet on CamVid (SegNet 11-class layout, 480×360 frames), J = 3 SAP poolings.

python run.py --config=configs/msfnet_camvid.py \
    --config.dataset.root=/path/to/camvid --workdir=DIR

The paper resizes CamVid to 768×1024 for training and testing and trains twice the Cityscapes
epochs (700) with the Cityscapes recipe otherwise (configs/msfnet_cityscapes.py): random
scale [0.5, 2], 768×1024 crops, batch 12. Our 480×360 frames are resized to 1024×768
(`data.resize_long_edge`), so evaluation also runs at 768×1024 against nearest-resized labels.
Gaps: whether CamVid trains on train or train+val, and Cityscapes pretraining (not
mentioned); this trains on train, from the ImageNet trunk as on Cityscapes (see there for
the backbone import). The 512×768 model (MSFNet*) is
`--config.data.resize_long_edge=768 --config.data.crop_size='(512, 768)'`.
"""

import ml_collections

from configs import common, default


def get_config(variant=None):
    """`variant="cpu"`: the from-scratch 2-core CPU protocol (configs/common.py); whole
    360×480 frames instead of the 1024×768 resize."""
    config = common.camvid(default.get_config(), crop=(768, 1024), global_batch_size=12,
                           steps=700 * (common.CAMVID_TRAIN_IMAGES // 12))
    config.data.resize_long_edge = 1024
    config.model.name = "msfnet"
    config.model.kwargs = ml_collections.ConfigDict({
        "num_poolings": 3,
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
    return common.variant(config, variant, "msfnet_camvid").lock()
