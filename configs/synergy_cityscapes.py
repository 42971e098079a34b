"""Multi-scale synergy (DeepLabv3+ R50 at 0.5x and 1x, uncertain-pixel fusion) on Cityscapes.

python run.py --config=configs/synergy_cityscapes.py \
    --config.dataset.root=/path/to/cityscapes --workdir=DIR

Paper (Quyen & Kim): SGD momentum 0.9, weight decay 5e-4, lr 0.01, "polynomial" schedule,
150 epochs, batch 2 per GPU on one Titan X (global batch 2, 223k iterations), cross-entropy.
Both scales are trained jointly and the loss is the NLL of the renormalised fused map
(`config.loss.synergy.kind`: renormalised | noisy_or | softmax); the fusion reading is
`--config.model.kwargs.fusion=prob|mask|logits|attention` (default prob: Eq. 1 on the two
scales' softmax maps).
Recipe gaps: crop 896 and scale 0.5-2.0 are NVIDIA's defaults, not stated by the paper;
poly power 0.9 per iteration is assumed (NVIDIA: 1.0 per epoch); NVIDIA's colour jitter
(0.25) and class-uniform sampling are not implemented; the trunk starts from ImageNet
ResNet-50 weights with `--config.model.pretrained=resnet50-19c8e357.npz` (torchvision's state
dict as .npz / .safetensors, or .pth with torch; not shipped, so the default starts from
scratch): it fills `backbone` and the rest keeps its init. A whole DeepV3PlusR50 state dict
goes to config.init_checkpoint instead, the parameters being the same. Per-scale auxiliary
CE is off (`--config.loss.synergy.scale_aux_weight=0.05` is NVIDIA's). A global batch of 2 needs a
mesh of 1 or 2 devices.
"""

import ml_collections

from configs import common, default


def get_config():
    config = common.cityscapes(default.get_config(), crop=(896, 896), global_batch_size=2,
                               epochs=150)
    config.model.name = "synergy_deeplabv3plus_r50"
    config.model.kwargs = ml_collections.ConfigDict(
        {"output_stride": 8, "scales": (0.5, 1.0), "fusion": "prob"})
    common.sgd_poly(config, 0.01)
    config.loss.name = "ce"
    config.loss.class_weights = ()
    config.loss.aux.weight = 0.0
    config.eval_batch_size = 2
    # NLL of the renormalised fused map; per-scale CE off.
    config.loss.synergy.kind = "renormalised"
    config.loss.synergy.scale_aux_weight = 0.0
    return config.lock()
