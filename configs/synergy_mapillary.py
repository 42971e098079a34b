"""Multi-scale synergy (DeepLabv3+ R50, 0.5x + 1x) on Mapillary Vistas v1.2 (65 classes).

python run.py --config=configs/synergy_mapillary.py \
    --config.dataset.root=/path/to/mapillary --workdir=DIR

The root holds the v1.2 package (training/{images,labels}) or the v2.0 package
(training/images, training/v1.2/labels). Every frame is first resized to a long edge of
2177 pixels (4:3 frames become 2177x1632, the paper's size and NVIDIA's Mapillary
`pre_size`), for training and evaluation alike. Optimiser as the Cityscapes recipe: SGD
0.01, momentum 0.9, weight decay 5e-4, poly, 150 epochs, batch 2 (one RTX 3090 in the
paper): 1.35M iterations on 18,000 images. Recipe gaps as in configs/synergy_cityscapes.py
(crop 896 and scale 0.5-2.0 are NVIDIA's defaults; no colour jitter or class-uniform
sampling; the ImageNet ResNet-50 trunk is loaded with
`--config.model.pretrained=resnet50-19c8e357.npz`, a torchvision state dict, not shipped).
"""

import ml_collections

from configs import common, default

MAPILLARY_TRAIN_IMAGES = 18000


def get_config():
    config = default.get_config()
    config.dataset.name = "mapillary"
    config.dataset.root = "data/mapillary"
    config.dataset.train_split = "train"
    config.dataset.eval_split = "val"
    config.data.resize_long_edge = 2177
    config.data.crop_size = (896, 896)
    config.data.scale_range = (0.5, 2.0)
    config.global_batch_size = 2
    config.num_train_steps = 150 * (MAPILLARY_TRAIN_IMAGES // config.global_batch_size)
    config.log_every_steps = 100
    config.eval_every_steps = 20000
    config.checkpoint_every_steps = 2000
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
