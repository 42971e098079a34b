"""BCMFNet on CamVid (SegNet 11-class layout, 480x360 frames).

python run.py --config=configs/bcmfnet_camvid.py --config.dataset.root=/path/to/camvid \
    --workdir=DIR

The paper trains CamVid with batch 16 on 960x720 crops; the SegNet copy is 480x360, so the
crop is the whole frame. Other settings as the Cityscapes recipe.
"""

from configs import common, default


def get_config(variant=None):
    """`variant="cpu"`: the from-scratch 2-core CPU protocol (configs/common.py)."""
    config = common.camvid(default.get_config(), crop=(360, 480), global_batch_size=16,
                           steps=20000)
    config.model.name = "bcmfnet"
    config.model.kwargs.aux_head = True
    config.model.kwargs.lmfm_connection = "interval"
    config.model.kwargs.lmfm_p4_kernel = 1
    common.sgd_poly(config, 0.01)
    config.loss.name = "ohem"
    config.loss.aux.weight = 0.4
    config.loss.bcl.weight = 1.0
    return common.variant(config, variant, "bcmfnet_camvid").lock()
