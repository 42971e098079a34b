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
    config = default.get_config()
    config.dataset.name = "camvid"
    config.dataset.root = "data/camvid"
    config.data.crop_size = (360, 480)
    config.data.scale_range = (0.5, 2.0)

    config.global_batch_size = 16
    config.eval_batch_size = 8
    config.num_train_steps = 20000

    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.01
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 5e-4
    config.optimizer.schedule = "poly"
    config.optimizer.power = 0.9

    config.loss.name = "ohem"
    config.log_every_steps = 50
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 1000
    return common.variant(config, variant, "ddrnet23slim_camvid").lock()
