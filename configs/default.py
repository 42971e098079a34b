"""Defaults shared by every model x dataset config; each file overrides what its recipe says."""

import ml_collections

from segjax import losses

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    # Initial params + BatchNorm statistics (not optimizer state or step) when the workdir has
    # no checkpoint of its own: a segjax workdir / checkpoint step directory (also the output
    # of `python -m segjax.tools.convert`), or an .npz / .safetensors / .pth of an official
    # PyTorch state dict of the whole model (strict). "" starts from the model's init.
    config.init_checkpoint = ""

    config.model = ml_collections.ConfigDict()
    config.model.name = "ddrnet23_slim"
    # Constructor arguments of the registry model; `--config.model.kwargs.aux_head=False`.
    config.model.kwargs = ml_collections.ConfigDict({"aux_head": True})
    # A PyTorch state dict file (.npz / .safetensors; .pth / .pt / .pkl need torch) loaded
    # non-strictly at the start of a fresh run: every same-shaped entry, placed where its keys
    # fit (a torchvision ResNet in `backbone`, HarDNet's ImageNet trunk in `base`, ...); the
    # rest keeps its init. A workdir's own checkpoint wins; init_checkpoint is applied after.
    config.model.pretrained = ""

    config.dataset = ml_collections.ConfigDict()
    config.dataset.name = "synthetic"
    config.dataset.root = ""
    # CamVid on disk: "segnet" (480x360 copy, class-id PNGs) | "original" (960x720 release,
    # colour *_L.png labels grouped into the same 11 classes, SegNet split by frame name).
    config.dataset.camvid_format = "segnet"
    # Cityscapes storage: "directory" (unzipped official tree under `root`) | "tfds"
    # (array_record files built by `python -m data_pipelines.cityscapes_tfds prepare` in
    # `tfds_data_dir`; with `manual_dir` set to the folder of the official zips, a
    # single-process run builds them on first use). No path defaults to ~/tensorflow_datasets.
    config.dataset.format = "directory"
    config.dataset.tfds_data_dir = ""
    config.dataset.manual_dir = ""
    config.dataset.train_split = "train"
    config.dataset.eval_split = "val"
    # Only read by the synthetic source.
    config.dataset.image_size = (256, 512)
    config.dataset.num_train = 2000
    config.dataset.num_eval = 50
    config.dataset.seed = 0  # content seed of the synthetic scenes (eval uses seed + 1)

    config.data = ml_collections.ConfigDict()
    config.data.crop_size = (256, 256)
    config.data.scale_range = (0.5, 2.0)
    # Resize every frame so its long edge has this many pixels before augmentation and for
    # evaluation (labels nearest); 0 keeps the stored size. Mapillary's frames vary in size.
    config.data.resize_long_edge = 0
    config.data.hflip = True
    config.data.mean = IMAGENET_MEAN
    config.data.std = IMAGENET_STD
    config.data.channel_order = "rgb"
    config.data.num_workers = 0
    config.data.num_threads = 2
    config.data.prefetch_buffer_size = 4
    # False: an unreadable image/label stops the run, naming the file. True: it is skipped
    # (train: replaced by the next readable example; eval: left out of the metrics) and
    # the skips are counted in the logs, train/skipped_examples and eval num_skipped.
    config.data.skip_corrupt = False

    # Global batch sizes: split over all devices of all processes.
    config.global_batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = 1000

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "sgd"  # sgd | adam | adamw
    config.optimizer.learning_rate = 0.01
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = False
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    # PyTorch-style coupled L2 for sgd/adam; decoupled for adamw.
    config.optimizer.weight_decay = 5e-4
    config.optimizer.schedule = "poly"  # poly | cosine | constant
    config.optimizer.power = 0.9
    config.optimizer.end_learning_rate = 0.0
    config.optimizer.warmup_steps = 0
    config.optimizer.warmup_init_fraction = 0.1
    # Param groups: "decoder" is every param outside a top-level `backbone` module (all of
    # them for models without one); its LR and weight decay are scaled by these.
    config.optimizer.decoder_lr_multiplier = 1.0
    config.optimizer.decoder_wd_multiplier = 1.0

    # Loss terms and their settings: each term's defaults live with it in segjax/losses/
    # (`loss.name`: ce | ohem | bootstrap on the heads; `loss.ohem.*`, `loss.bootstrap.*`,
    # `loss.aux.weight`, `loss.bcl.*` (BCMFNet), `loss.cbs.*` (MSFNet), `loss.synergy.*`).
    config.loss = ml_collections.ConfigDict(losses.default_config())
    config.loss.aux.weight = 0.4  # the default model's aux head, as DDRNet trains it

    # Compute dtype: float32 | bfloat16 | float64. Params, BatchNorm statistics and logits are
    # float32 (float64 under float64, which switches JAX to 64 bits for the run).
    config.dtype = "float32"
    # Train-mode BatchNorm folds into its running variance the "unbiased" batch variance
    # (PyTorch's BatchNorm2d, as in every official trainer here) or the "biased" one (Flax's).
    config.bn_running_variance = "unbiased"

    # On CPU, XLA runs convolutions on its "eigen" kernels or on "ynnpack" (XLA's default);
    # neither wins everywhere (segjax/xla_cpu.py): Eigen for every model's inference, YNNPACK
    # for training except the HarDNet family (configs/common.py:hardnet_cpu_training).
    config.cpu_kernels = ml_collections.ConfigDict()
    config.cpu_kernels.train = "ynnpack"
    config.cpu_kernels.inference = "eigen"

    config.mesh = ml_collections.ConfigDict()
    config.mesh.shape = (-1,)
    config.mesh.axes = ("data",)

    config.log_every_steps = 50
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 500
    config.keep_checkpoints = 3
    config.async_checkpointing = True
    config.num_eval_images_to_log = 4
    # Evaluation views (segjax/inference.py): "whole" image or "slide" windows, each at every
    # scale in eval_scales, plus horizontal flips; several views average softmax scores.
    config.eval_mode = "whole"
    config.eval_scales = (1.0,)
    config.eval_flip = False
    config.eval_window = (1024, 1024)  # slide: window HxW
    config.eval_stride = (768, 768)  # slide: step HxW

    # --mode=predict (segjax/predict.py): images -> labels/, color/, overlay/ PNGs.
    config.predict = ml_collections.ConfigDict()
    config.predict.input = ""  # a folder or a quoted glob
    config.predict.output_dir = ""  # "" = <workdir>/predictions
    config.predict.label_format = "trainids"  # trainids | labelids (Cityscapes ids)
    config.predict.overlays = True

    # --mode=export: the latest checkpoint as one file for a runtime, uint8 RGB frames of
    # this HxW -> uint8 labels ("" = benchmark.resolution); segjax/export.py.
    config.export = ml_collections.ConfigDict()
    config.export.format = "jax"  # jax (XLA) | onnx (ONNX Runtime, TensorRT) | tflite (LiteRT)
    config.export.resolution = ""
    config.export.fold_batchnorm = True
    config.export.logits = False  # True: float32 class scores instead of labels
    config.export.batch = 1  # frames per call of a LiteRT file (jax and onnx take any)
    config.export.float16 = False  # LiteRT weights in float16 (half the file)
    config.export.output = ""  # "" = WORKDIR/export/<model>_<dataset>_<HxW>.<format suffix>

    # --mode=benchmark: the papers' speed protocol (segjax/benchmark.py).
    config.benchmark = ml_collections.ConfigDict()
    config.benchmark.resolution = "1024x2048"  # HxW
    config.benchmark.batch_size = 1
    config.benchmark.dtype = "float32"  # float32 | bfloat16
    config.benchmark.runtime = "xla"  # xla | onnxruntime | litert (float32, one device)
    config.benchmark.fold_batchnorm = True
    config.benchmark.warmup = 10
    config.benchmark.time_budget_s = 10.0
    config.benchmark.min_iterations = 10
    # Directory for one prediction PNG per eval image at stored resolution ("" = off), rewritten
    # by every evaluation: Cityscapes labelIds in the official result layout
    # (<dir>/<split>/<city>/*_pred_labelIds.png, for cityscapesscripts / the benchmark server),
    # trainIds for other datasets.
    config.eval_write_predictions = ""
    return config

