"""FASSD-Net's final fine-tuning stage on Cityscapes fine (paper, Sec. IV-A): 30k more steps
at global batch 24 and initial LR 1e-3, otherwise the 90k-step protocol.

python run.py --config=configs/fassdnet_cityscapes_finetune.py \
    --config.dataset.root=/path/to/cityscapes \
    --config.init_checkpoint=runs/fassdnet_cityscapes --workdir=runs/fassdnet_finetune

The official code has no config for this stage. Params and BatchNorm statistics come from
`init_checkpoint` (the 90k-step workdir, or an .npz of released weights); the optimizer
state and the poly schedule start afresh. A variant's stage: --config.model.name=fassdnet_l2.
"""

from configs.fassdnet_cityscapes import hardnet_cityscapes

FINETUNE_STEPS = 30_000
FINETUNE_BATCH = 24
FINETUNE_LR = 1e-3


def get_config():
    config = hardnet_cityscapes("fassdnet", alpha=2)
    config.init_checkpoint = "runs/fassdnet_cityscapes"
    config.num_train_steps = FINETUNE_STEPS
    config.global_batch_size = FINETUNE_BATCH
    config.optimizer.learning_rate = FINETUNE_LR
    return config.lock()
