"""The segjax command line (`python run.py ...` or the `segjax` entry point):

    segjax --config=configs/<model>_<dataset>.py [--config.key=value ...] --workdir=DIR
           [--mode=train|evaluate|predict|benchmark|export] [--verbose]
"""

import importlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from segjax import cli, logs, sharding

# --mode -> (module, function(config, workdir)); imported on use, so inference never loads TF.
MODES = {
    "train": ("segjax.train", "train_and_evaluate"),
    "evaluate": ("segjax.evaluate", "evaluate"),
    "predict": ("segjax.predict", "predict"),
    "benchmark": ("segjax.benchmark", "benchmark"),
    "export": ("segjax.export", "export"),
}

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, logs and evaluation results go here.")
flags.DEFINE_enum("mode", "train", list(MODES),
                  "train: train (resuming from --workdir) and evaluate; "
                  "evaluate: evaluate the latest checkpoint in --workdir; "
                  "predict: label the images of config.predict.input with it; "
                  "benchmark: time the inference forward through XLA, ONNX Runtime or LiteRT "
                  "(config.benchmark); export: the latest checkpoint as one jax, ONNX or "
                  "LiteRT file (config.export).")
flags.DEFINE_bool("traceback", False, "Show the full traceback of configuration and data errors.")
flags.DEFINE_bool("verbose", False, "Also show library and INFO logs (TensorFlow start-up, "
                  "metric writers, checkpointing).")
flags.mark_flags_as_required(["config", "workdir"])

# Mistakes in the config, the data or the workdir: reported as one line, not a traceback.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FloatingPointError, OSError)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logs.configure_console(verbose=FLAGS.verbose)
    sharding.maybe_initialize_distributed()
    module_name, function = MODES[FLAGS.mode]
    try:
        run_mode = getattr(importlib.import_module(module_name), function)
        run_mode(FLAGS.config, FLAGS.workdir)
    except KeyboardInterrupt as e:  # a training run checkpointed on SIGTERM / SIGINT
        sys.exit(getattr(e, "exit_code", 130))
    except USER_ERRORS as e:
        if FLAGS.traceback:
            raise
        logging.error("%s: %s", type(e).__name__, e)
        sys.exit(f"error: {e}")


def run():
    """Entry point: library start-up noise is silenced before anything imports TensorFlow."""
    if {"-h", "--help"} & set(sys.argv[1:]):  # absl's --help lists only __main__'s flags
        print(f"{__doc__.strip()}\n\n{FLAGS.module_help(__name__)}\n\n"
              "Config fields: --config.<field>=value (see configs/default.py); "
              "--helpfull lists every library flag.")
        return
    logs.quiet_environment(verbose="--verbose" in sys.argv or "--verbose=true" in sys.argv)
    app.run(main, flags_parser=cli.parse_flags)
