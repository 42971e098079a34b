"""Run tools: curves from a workdir, and a training run sized to a time budget."""

import json
import subprocess
import sys

import pytest

from segjax.tools import plot_runs, timed_train


def _fake_run(workdir, miou_by_step, with_events=True):
    """A workdir as a run leaves it: TensorBoard scalars and eval_step_<N>.json files."""
    workdir.mkdir(parents=True)
    if with_events:
        from clu import metric_writers

        writer = metric_writers.create_default_writer(str(workdir), asynchronous=False)
        for step in range(10, 101, 10):
            writer.write_scalars(step, {"train/loss": 3.0 / step ** 0.5,
                                        "steps_per_sec": 2.0})
        for step, miou in miou_by_step.items():
            writer.write_scalars(step, {"eval/miou": miou})
        writer.close()
    for step, miou in miou_by_step.items():
        (workdir / f"eval_step_{step}.json").write_text(json.dumps({"step": step, "miou": miou}))


def test_plot_runs_reads_scalars_and_writes_the_figure(tmp_path, capsys):
    _fake_run(tmp_path / "a", {50: 0.30, 100: 0.42})
    _fake_run(tmp_path / "b", {100: 0.38}, with_events=False)  # eval JSONs only
    run = plot_runs.read_run(tmp_path / "a")
    assert run.loss.steps == list(range(10, 101, 10))
    assert run.miou.steps == [50, 100] and run.miou.values == pytest.approx([30.0, 42.0])
    assert all(m >= 0 for m in run.miou.minutes)
    out = tmp_path / "curves.png"
    code = plot_runs.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out),
                           "--labels", "first,second"])
    printed = capsys.readouterr().out
    assert code == 0 and out.stat().st_size > 10_000
    assert "first: 10 loss points, 2 evaluations, best val mIoU 42.00" in printed
    assert "second: 0 loss points, 1 evaluations, best val mIoU 38.00" in printed


def test_wall_time_leaves_out_the_time_a_run_stood_stopped(tmp_path):
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    for points in ([(10, 1000.0), (70, 1060.0)], [(80, 5000.0), (100, 5030.0)]):  # a restart
        writer = EventFileWriter(str(tmp_path))
        for step, wall in points:
            value = summary_pb2.Summary.Value(tag="train/loss", simple_value=1.0)
            writer.add_event(event_pb2.Event(wall_time=wall, step=step,
                                             summary=summary_pb2.Summary(value=[value])))
        writer.close()
    run = plot_runs.read_run(tmp_path)
    assert run.loss.steps == [10, 70, 80, 100]
    assert run.loss.minutes == pytest.approx([0.0, 1.0, 1.0, 1.5])


def test_plot_runs_names_a_folder_that_is_no_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert plot_runs.main([str(tmp_path / "empty"), "--out", str(tmp_path / "x.png")]) == 2
    assert "holds no TensorBoard scalars" in capsys.readouterr().err


def test_plan_steps_fits_the_budget():
    # 480 s budget, 60 s spent calibrating, 90 s reserved: 330 s at 0.9 x 2 steps/s = 594
    assert timed_train.plan_steps(480, 60, 90, 2.0) == 550
    assert timed_train.plan_steps(480, 60, 90, 0.2) == 59  # too few to round to 50s
    with pytest.raises(ValueError, match="budget_s=100 leaves no time"):
        timed_train.plan_steps(100, 60, 90, 2.0)


@pytest.mark.slow
def test_timed_train_prints_miou_rate_and_device_last(tmp_path):
    cmd = [sys.executable, "-m", "segjax.tools.timed_train", "--config=configs/quickstart.py",
           f"--workdir={tmp_path}", "--budget_s=150", "--reserve_s=60",
           "--calibration_steps=3", "--config.dataset.num_eval=8",
           "--config.data.crop_size=(64,64)", "--config.dataset.image_size=(64,96)"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-3:]
    assert last[0].startswith("val mIoU=") and last[1].startswith("images/s=")
    assert last[2].startswith("device=") and "cpu" in last[2]
    assert float(last[1].split("=")[1]) > 0
    assert list(tmp_path.glob("eval_step_*.json"))


def test_plot_predictions_rows_are_image_truth_prediction(camvid_root, tmp_path, capsys):
    import cv2
    import numpy as np

    from data_pipelines.camvid import CamVidSource
    from segjax.tools import plot_predictions

    val = CamVidSource(camvid_root, "val")
    labels = tmp_path / "labels"
    labels.mkdir()
    for index in (0, 3):  # a "prediction" that is the ground truth with one class swapped
        label = val[index]["label"].copy()
        label[label == 3] = 4
        cv2.imwrite(str(labels / val.name(index)), label)
    out = tmp_path / "frames.png"
    assert plot_predictions.main(["--dataset", "camvid", "--root", str(camvid_root),
                                  "--predictions", str(labels), "--frames", "0,3",
                                  "--out", str(out)]) == 0
    figure = cv2.imread(str(out))[..., ::-1]
    assert figure.shape == (2 * 360, 3 * 480, 3)
    np.testing.assert_array_equal(figure[:360, :480], val[0]["image"])
    truth, predicted = figure[:360, 480:960], figure[:360, 960:]
    assert (truth != predicted).any() and (truth == predicted).all(axis=-1).mean() > 0.5
    assert plot_predictions.main(["--dataset", "camvid", "--root", str(camvid_root),
                                  "--predictions", str(labels), "--frames", "1",
                                  "--out", str(out)]) == 2
    assert "no prediction for" in capsys.readouterr().err


def test_training_without_tensorflow_writes_scalars_images_and_progress(tmp_path, monkeypatch,
                                                                         capsys):
    """Accelerator images often lack TensorFlow, which clu's TensorBoard writer needs."""

    from segjax import cli, train

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` fails
    config = cli.load_config("configs/quickstart.py")
    for key, value in {"dataset.image_size": (64, 96), "dataset.num_train": 32,
                       "dataset.num_eval": 8, "data.crop_size": (64, 64),
                       "num_train_steps": 4, "log_every_steps": 1, "eval_every_steps": 4,
                       "checkpoint_every_steps": 4, "num_eval_images_to_log": 2}.items():
        *parents, leaf = key.split(".")
        node = config
        for name in parents:
            node = node[name]
        node[leaf] = value
    train.train_and_evaluate(config, str(tmp_path))
    run = plot_runs.read_run(tmp_path)
    assert run.loss.steps == [1, 2, 3, 4] and run.miou.steps == [4]
    assert "steps_per_sec" in plot_runs.read_scalars(tmp_path)
    assert list((tmp_path / "images").glob("eval_image_label_prediction_step4.png"))
    assert (tmp_path / "hparams.json").is_file()
    out = capsys.readouterr().out.splitlines()
    progress = [line for line in out if line.startswith("step 4/4")]
    assert progress and "(100%)  loss " in progress[0] and "ETA 0m00s" in progress[0]
