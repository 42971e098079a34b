"""DDRNet-23-slim on CamVid (SegNet 11-class layout, 480x360).

python run.py --config=configs/ddrnet23slim_camvid.py \
    --config.dataset.root=/path/to/camvid --workdir=DIR

DDRNet's CamVid recipe is not published in code; this follows its Cityscapes recipe
(SGD 0.9, poly 0.9, weight decay 5e-4, OHEM, aux 0.4) at CamVid's full frame size.
`configs/ddrnet23slim_camvid.py:cpu` is the from-scratch protocol for a 2-core CPU
(`configs/common.py:camvid_cpu`).
"""

from configs import common, default


def get_config(variant=None):
    """`variant="cpu"`: the from-scratch 2-core CPU protocol (configs/common.py)."""
    config = common.camvid(default.get_config(), crop=(360, 480), global_batch_size=16,
                           steps=20000)
    config.model.name = "ddrnet23_slim"
    config.model.kwargs.aux_head = True
    common.sgd_poly(config, 0.01)
    config.loss.name = "ohem"
    config.loss.aux.weight = 0.4
    return common.variant(config, variant, "ddrnet23slim_camvid").lock()
