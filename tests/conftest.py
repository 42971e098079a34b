"""Test-wide setup: 8 simulated CPU devices and parsed absl flags, before jax loads."""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Many tests (and their subprocesses) compile the same DDRNet programs: reuse them from disk.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    str(pathlib.Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax_compilation_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pytest  # noqa: E402
from absl import flags  # noqa: E402

# grain's worker processes read absl flags; pytest never parses them.
flags.FLAGS.mark_as_parsed()

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
CAMVID = SHARED / "data" / "camvid"
PARITY = SHARED / "fixtures" / "parity"
TRAIN_STEP = SHARED / "fixtures" / "train_step"


@pytest.fixture
def camvid_root():
    if not (CAMVID / "train.txt").exists():
        pytest.skip(f"CamVid not found at {CAMVID}: "
                    "put the SegNet CamVid copy in ../shared/data/camvid")
    return CAMVID


@pytest.fixture
def parity_dir():
    if not PARITY.is_dir():
        pytest.skip(f"parity fixtures not found at {PARITY}")
    return PARITY


@pytest.fixture
def train_step_dir():
    if not TRAIN_STEP.is_dir():
        pytest.skip(f"training-step fixtures not found at {TRAIN_STEP}")
    return TRAIN_STEP
