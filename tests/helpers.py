"""Helpers shared by several test modules."""

# The quickstart recipe shrunk to a one-block-per-stage DDRNet on 64x64 crops. Plain SGD at
# a small constant LR: unoptimised XLA code sums gradients less accurately (1e-3 relative
# between device counts), and the LR scales that into the params; Adam would undo it.
TINY_CONFIG = """
from configs import quickstart


def get_config():
    config = quickstart.get_config()
    with config.unlocked():
        config.model.kwargs.update(planes=8, spp_planes=16, head_planes=16,
                                   layers=(1, 1, 1, 1), aux_head=False)
    config.dataset.image_size = (64, 96)
    config.dataset.num_train = 32
    config.dataset.num_eval = 5
    config.data.crop_size = (64, 64)
    config.global_batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = {steps}
    config.log_every_steps = 1
    config.eval_every_steps = 100
    config.checkpoint_every_steps = 100
    config.num_eval_images_to_log = 1
    config.optimizer.name = "sgd"
    config.optimizer.momentum = 0.0
    config.optimizer.schedule = "constant"
    config.optimizer.warmup_steps = 0
    config.optimizer.learning_rate = 0.001
    return config
"""
