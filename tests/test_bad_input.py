"""Mistakes a user makes, and the one-line message each gets."""

import subprocess
import sys

import pytest

from segjax import cli, models
from segjax.tools import summary


def run_py(*args, timeout=120):
    return subprocess.run([sys.executable, "run.py", *args], capture_output=True, text=True,
                          timeout=timeout)


# ------------------------------------------------------------------- typed model arguments

def test_summary_set_false_turns_the_boundary_head_off(capsys):
    assert summary.main(["--model", "msfnet", "--num_classes", "19", "--resolution", "128x128",
                         "--set", "class_boundary_supervision=false"]) == 0
    assert "params=13666835 " in capsys.readouterr().out  # MSFNet without CBS


@pytest.mark.parametrize("text,value", [("false", False), ("FALSE", False), ("True", True)])
def test_bool_arguments_parse_in_any_case(text, value):
    assert models.build("msfnet", 11, class_boundary_supervision=text
                        ).class_boundary_supervision is value


def test_none_and_numbers_and_tuples_parse_from_text():
    model = models.build("fassdnet_l2", 19, decoder_conv_width="None", stem_strides="(3, 1)")
    assert model.decoder_conv_width is None and model.stem_strides == (3, 1)
    assert models.build("msfnet", 11, num_poolings="3").num_poolings == 3


@pytest.mark.parametrize("kwargs,message", [
    ({"class_boundary_supervision": "yes"},
     "model 'msfnet': argument class_boundary_supervision='yes' (str) is not true/false"),
    ({"num_poolings": 3.5}, "model 'msfnet': argument num_poolings=3.5 (float) is not int"),
    ({"pooling": 3}, "model 'msfnet': argument pooling=3 (int) is not str"),
])
def test_wrong_type_names_argument_model_type_and_value(kwargs, message):
    with pytest.raises(TypeError) as err:
        models.build("msfnet", 11, **kwargs)
    assert str(err.value) == message


def test_summary_reports_a_wrong_type_in_one_line(capsys):
    assert summary.main(["--model", "msfnet", "--num_classes", "19", "--resolution", "128x128",
                         "--set", "num_poolings=many"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: model 'msfnet': argument num_poolings='many' (str) is not int")


# ------------------------------------------------------------------------- config typos

def test_unknown_config_field_is_one_line_with_the_closest_field():
    done = run_py("--config=configs/quickstart.py", "--config.optimizer.lr=0.1",
                  "--workdir=/nonexistent/never_written")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith("error: --config.optimizer.lr: config.optimizer has no field "
                               "'lr'; did you mean config.optimizer.learning_rate? (fields of "
                               "config.optimizer: b1, b2, ")


def test_traceback_flag_still_shows_everything():
    done = run_py("--config=configs/quickstart.py", "--config.optimizer.lr=0.1",
                  "--workdir=/nonexistent/never_written", "--traceback")
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_closest_field_prefers_initials_then_spelling():
    fields = ["decoder_lr_multiplier", "learning_rate", "momentum"]
    assert cli.closest("lr", fields) == "learning_rate"
    assert cli.closest("momentun", fields) == "momentum"


def test_unknown_top_level_field_and_unknown_variant():
    config = cli.load_config("configs/quickstart.py")
    with pytest.raises(cli.ConfigFieldError, match="did you mean config.optimizer"):
        cli.check_overrides(config, ["--config.optimiser.lr=1"])
    cli.check_overrides(config, ["--config.optimizer.learning_rate=1", "--config.mesh.shape=(1,)"])
    with pytest.raises(ValueError, match="ddrnet23slim_camvid.py:gpu: unknown variant"):
        cli.load_config("configs/ddrnet23slim_camvid.py:gpu")
