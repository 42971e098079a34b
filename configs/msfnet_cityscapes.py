"""MSFNet on Cityscapes fine, the 1024×2048 model (J = 5 SAP poolings), paper §4.2 recipe.

python run.py --config=configs/msfnet_cityscapes.py \
    --config.dataset.root=/path/to/cityscapes --workdir=DIR

Stated: Adam, batch 12, weight decay 2.5e-5, cosine LR 1e-4 → 1e-6, 350 epochs, random scale
[0.5, 2], 1024×1024 crops, horizontal flip; loss CE + 1·CE on class boundaries at 1/8 (ε = 1);
whole-frame single-scale evaluation. Gaps the paper leaves, and the choices here:
- ImageNet ResNet-18 init of `backbone` (stated): not shipped; pass torchvision's
  `resnet18` state dict, e.g. `--config.model.pretrained=resnet18-f37072fd.npz`
  (.npz / .safetensors; .pth with torch). It fills exactly `backbone` (`fc` is skipped) and
  the run prints what loaded; the decoder starts from its init.
- Adam betas: not stated; PyTorch's defaults (0.9, 0.999). SwiftNet, whose fine-tuning LR and
  weight decay these equal, uses b2 = 0.99.
- Parameter groups: not stated; one group. SwiftNet's new layers train at 4× LR and weight
  decay: `--config.optimizer.decoder_lr_multiplier=4 --config.optimizer.decoder_wd_multiplier=4`.
- "Mean subtraction" only: the ImageNet mean/std normalisation the torchvision trunk was
  trained with is kept.
- No class weights, no OHEM (all losses are plain CE).
"""

import ml_collections

from configs import common, default


def get_config():
    config = common.cityscapes(default.get_config(), crop=(1024, 1024), global_batch_size=12,
                               epochs=350)
    config.model.name = "msfnet"
    config.model.kwargs = ml_collections.ConfigDict({
        "num_poolings": 5,
        "channels": 256,
        "stage_merge": "concat",  # concat | add
        "pooling": "avg",  # avg | max
        "class_boundary_supervision": True,
        "num_branches": 0,  # 0: two with CBS, one without
    })
    # Plain CE on the output and 1·CE on the class boundaries at 1/8 (ε = 1).
    config.loss.name = "ce"
    config.loss.class_weights = ()
    config.loss.aux.weight = 0.0
    config.loss.cbs.weight = 1.0
    config.loss.cbs.epsilon = 1
    config.loss.cbs.label_mode = "extra_class"
    common.adam_cosine(config, 1e-4, end_learning_rate=1e-6, weight_decay=2.5e-5)
    return config.lock()
