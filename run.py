"""segjax command line: python run.py --config=configs/X.py [--config.a.b=v ...] --workdir=DIR."""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from segjax import logs, sharding

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, logs and evaluation results go here.")
flags.DEFINE_enum("mode", "train", ["train", "evaluate"],
                  "train: train (resuming from --workdir) and evaluate; "
                  "evaluate: evaluate the latest checkpoint in --workdir.")
flags.DEFINE_bool("traceback", False, "Show the full traceback of configuration and data errors.")
flags.mark_flags_as_required(["config", "workdir"])

# Mistakes in the config, the data or the workdir: reported as one line, not a traceback.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FloatingPointError)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logs.quiet_library_logs()
    sharding.maybe_initialize_distributed()
    try:
        if FLAGS.mode == "train":
            from segjax import train

            train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
        else:
            from segjax import evaluate

            evaluate.evaluate(FLAGS.config, FLAGS.workdir)
    except USER_ERRORS as e:
        if FLAGS.traceback:
            raise
        logging.error("%s: %s", type(e).__name__, e)
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
