"""BCMFNet on CamVid (SegNet 11-class layout, 480x360 frames).

python run.py --config=configs/bcmfnet_camvid.py --config.dataset.root=/path/to/camvid \
    --workdir=DIR

The paper trains CamVid with batch 16 on 960x720 crops; the SegNet copy is 480x360, so the
crop is the whole frame. Other settings as the Cityscapes recipe.
"""

from configs import bcmfnet_cityscapes, common, ddrnet23slim_camvid


def get_config(variant=None):
    """`variant="cpu"`: the from-scratch 2-core CPU protocol (configs/common.py)."""
    config = ddrnet23slim_camvid.get_config()
    with config.unlocked():
        config.model.kwargs.lmfm_connection = "interval"
        config.model.kwargs.lmfm_p4_kernel = 1
    config = bcmfnet_cityscapes.bcmfnet(config)
    config.global_batch_size = 16
    return common.variant(config, variant, "bcmfnet_camvid").lock()
