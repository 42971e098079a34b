"""FASSD-Net on Cityscapes fine: the official recipe (GibranBenitez/FASSD-Net configs/*.yml).

python run.py --config=configs/fassdnet_cityscapes.py \
    --config.dataset.root=/path/to/cityscapes --workdir=runs/fassdnet_cityscapes

SGD 0.02 (momentum 0.9, coupled weight decay 5e-4 on every param), poly 0.9 over 90k steps,
global batch 16 of 1024x1024 crops (scale 0.5-2.0, flip), per-image bootstrapped CE
(4096 pixels, threshold 0.3), BGR input normalised with ImageNet statistics in BGR order.
The official run splits the batch over 2 GPUs without SyncBN (BatchNorm statistics over 8
images); here BatchNorm sees the whole global batch. The paper's final models add a
fine-tuning stage: configs/fassdnet_cityscapes_finetune.py.
The official run starts `base` (the HarDNet encoder) from ImageNet weights: pass the
official `weights/imagenet_weights.pth` (= FCHarDNet's `hardnet_petite_base.pth`, keys
`0.conv.weight` ...; not shipped) converted to .npz / .safetensors, or the .pth where torch is
installed, as `--config.model.pretrained=imagenet_weights.npz`; it lands in `base` (its
HarDNet-70 blocks 15-17 are skipped) and DAPF and the decoder keep their init. Both expect
the BGR input set here.
"""

import ml_collections

from configs import default
from configs.ddrnet23slim_cityscapes import cityscapes

# The official loader flips RGB->BGR and normalises with ImageNet's statistics in that order,
# which is what the ImageNet-pretrained HarDNet backbone and the released weights expect.
BGR_MEAN = tuple(reversed(default.IMAGENET_MEAN))
BGR_STD = tuple(reversed(default.IMAGENET_STD))
OFFICIAL_STEPS = 90_000
OFFICIAL_BATCH = 16


def hardnet_recipe(config, model_name, **model_kwargs):
    """The FC-HarDNet / FASSD-Net training recipe on top of `config`'s dataset settings."""
    config.model.name = model_name
    config.model.kwargs = ml_collections.ConfigDict(model_kwargs)
    config.data.mean = BGR_MEAN
    config.data.std = BGR_STD
    config.data.channel_order = "bgr"
    config.data.hflip = True
    # ptsemseg's bootstrapped_cross_entropy2d (FCHarDNet and FASSD-Net, loss/loss.py): per
    # image, ignored pixels take part in the sort with loss 0, images averaged.
    config.loss.name = "bootstrap"
    config.loss.bootstrap_thresh = 0.3
    config.loss.bootstrap_min_kept = 4096
    config.loss.class_weights = ()
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.02
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = False
    config.optimizer.weight_decay = 5e-4
    config.optimizer.schedule = "poly"
    config.optimizer.power = 0.9
    config.optimizer.warmup_steps = 0
    return config


def hardnet_cityscapes(model_name, **model_kwargs):
    """Cityscapes at the official 1024x1024 crops, batch 16, 90k steps (≈484 epochs)."""
    config = cityscapes(default.get_config(), crop=(1024, 1024),
                        global_batch_size=OFFICIAL_BATCH)
    config.num_train_steps = OFFICIAL_STEPS
    return hardnet_recipe(config, model_name, **model_kwargs)


def get_config():
    return hardnet_cityscapes("fassdnet", alpha=2).lock()
