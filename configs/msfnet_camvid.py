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

from configs import default, msfnet_cityscapes

CAMVID_TRAIN_IMAGES = 367


def get_config():
    config = default.get_config()
    config.dataset.name = "camvid"
    config.dataset.root = "data/camvid"
    config.data.resize_long_edge = 1024
    config.data.crop_size = (768, 1024)
    config.global_batch_size = 12
    config.eval_batch_size = 8
    config.num_train_steps = 700 * (CAMVID_TRAIN_IMAGES // config.global_batch_size)
    config.log_every_steps = 50
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 1000
    return msfnet_cityscapes.msfnet(config, num_poolings=3).lock()
