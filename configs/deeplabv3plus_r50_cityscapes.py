"""DeepLabv3+ R50 (NVIDIA DeepV3PlusR50, output stride 8) on Cityscapes fine, single scale.

python run.py --config=configs/deeplabv3plus_r50_cityscapes.py \
    --config.dataset.root=/path/to/cityscapes --workdir=DIR

The single-scale baseline of the synergy model (its ablation, and a fallback: train
this, then fuse two scales only at inference by loading its weights into
`synergy_deeplabv3plus_r50`, whose parameters are the same). The recipe is the synergy
paper's (SGD 0.01, momentum 0.9, weight decay 5e-4, poly, 150 epochs, batch 2, plain CE);
crop 896 and scale 0.5-2.0 are NVIDIA's defaults. `--config.model.kwargs.output_stride=16`
is the ~3x cheaper variant.
Recipe gaps: NVIDIA's colour jitter (0.25) and class-uniform sampling are not implemented;
the trunk starts from ImageNet ResNet-50 weights with
`--config.model.pretrained=resnet50-19c8e357.npz` (torchvision's state dict as .npz /
.safetensors, or .pth with torch; not shipped, so the default starts from scratch), which
fills `backbone` only; the poly power
(0.9 per iteration) is not stated by the paper (NVIDIA: 1.0 per epoch). A global batch of 2
needs a mesh of 1 or 2 devices.
"""

import ml_collections

from configs import common, default


def get_config():
    config = common.cityscapes(default.get_config(), crop=(896, 896), global_batch_size=2,
                               epochs=150)
    config.model.name = "deeplabv3plus_r50"
    config.model.kwargs = ml_collections.ConfigDict({"output_stride": 8})
    common.sgd_poly(config, 0.01)
    config.loss.name = "ce"
    config.loss.class_weights = ()
    config.loss.aux.weight = 0.0
    config.eval_batch_size = 2
    return config.lock()
