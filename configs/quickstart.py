"""DDRNet-23-slim on procedurally generated street scenes: trains and evaluates on 2 CPU cores.

python run.py --config=configs/quickstart.py --workdir=/tmp/quickstart
"""

from configs import default


def get_config():
    config = default.get_config()
    config.dataset.name = "synthetic"
    config.dataset.image_size = (192, 384)
    config.dataset.num_train = 4000
    config.dataset.num_eval = 48
    config.data.crop_size = (160, 160)
    config.data.scale_range = (0.75, 1.5)

    config.global_batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = 600

    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 5e-3
    config.optimizer.weight_decay = 0.0
    config.optimizer.schedule = "poly"
    config.optimizer.warmup_steps = 50

    config.loss.name = "ce"
    config.log_every_steps = 50
    config.eval_every_steps = 300
    config.checkpoint_every_steps = 200
    return config.lock()
