"""DDRNet-23-slim on Cityscapes fine: the official recipe (chenjun2hao/HRNet-style trainer).

python run.py --config=configs/ddrnet23slim_cityscapes.py \
    --config.dataset.root=/path/to/cityscapes --workdir=DIR
"""

from configs import common, default


def get_config():
    config = common.cityscapes(default.get_config(), crop=(1024, 1024), global_batch_size=12,
                               epochs=484)
    config.model.name = "ddrnet23_slim"
    config.model.kwargs.aux_head = True
    common.sgd_poly(config, 0.01)
    # HRNet's OhemCrossEntropy on both heads (1.0 / 0.4), selecting within each GPU's batch.
    config.loss.name = "ohem"
    config.loss.ohem.thresh = 0.9
    config.loss.ohem.min_kept = 131072
    config.loss.ohem.min_kept_batch = 6
    config.loss.ohem.scope = "group"
    config.loss.class_weights = common.CITYSCAPES_CLASS_WEIGHTS
    config.loss.aux.weight = 0.4
    return config.lock()
