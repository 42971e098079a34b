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

from configs import common, default

OFFICIAL_STEPS = 90_000
OFFICIAL_BATCH = 16


def get_config():
    config = common.cityscapes(default.get_config(), crop=(1024, 1024),
                               global_batch_size=OFFICIAL_BATCH)
    config.num_train_steps = OFFICIAL_STEPS
    config.model.name = "fassdnet"
    config.model.kwargs = ml_collections.ConfigDict({"alpha": 2})
    common.bgr_imagenet_input(config)
    common.sgd_poly(config, 0.02)
    common.hardnet_bootstrap_loss(config)
    common.hardnet_cpu_training(config)
    return config.lock()
