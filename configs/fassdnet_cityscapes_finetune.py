"""FASSD-Net's final fine-tuning stage on Cityscapes fine (paper, Sec. IV-A): 30k more steps
at global batch 24 and initial LR 1e-3, otherwise the 90k-step protocol.

python run.py --config=configs/fassdnet_cityscapes_finetune.py \
    --config.dataset.root=/path/to/cityscapes \
    --config.init_checkpoint=runs/fassdnet_cityscapes --workdir=runs/fassdnet_finetune

The official code has no config for this stage. Params and BatchNorm statistics come from
`init_checkpoint` (the 90k-step workdir, or an .npz of released weights); the optimizer
state and the poly schedule start afresh. A variant's stage: --config.model.name=fassdnet_l2.
"""

import ml_collections

from configs import common, default

FINETUNE_STEPS = 30_000
FINETUNE_BATCH = 24
FINETUNE_LR = 1e-3


def get_config():
    config = common.cityscapes(default.get_config(), crop=(1024, 1024),
                               global_batch_size=FINETUNE_BATCH)
    config.num_train_steps = FINETUNE_STEPS
    config.init_checkpoint = "runs/fassdnet_cityscapes"
    config.model.name = "fassdnet"
    config.model.kwargs = ml_collections.ConfigDict({"alpha": 2})
    common.bgr_imagenet_input(config)
    common.sgd_poly(config, FINETUNE_LR)
    common.hardnet_bootstrap_loss(config)
    common.hardnet_cpu_training(config)
    return config.lock()
