"""The package installs from a wheel and runs outside the repository."""

import pathlib
import shutil
import subprocess
import sys
import sysconfig

from helpers import REPO


def _run(args, **kwargs):
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


def test_wheel_installs_and_runs_outside_the_repository(tmp_path):
    # Built from a copy: setuptools writes build/ and *.egg-info/ next to the sources.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    for name in ("segjax", "data_pipelines"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--wheel-dir", str(dist), str(source)])
    (wheel,) = dist.glob("segjax-*.whl")
    env_dir = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(env_dir)])
    python = env_dir / "bin" / "python"
    # The fresh environment sees the dependencies already installed here, not the repository.
    site = pathlib.Path(_run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "installed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", str(wheel)])

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    usage = _run([str(env_dir / "bin" / "segjax"), "--help"], cwd=outside, env=env).stdout
    assert "--config" in usage and "--workdir" in usage and "--mode" in usage
    found = _run([str(python), "-c", "import segjax.models, data_pipelines.metadata; "
                  "print(segjax.models.__file__); print(len(segjax.models.available()))"],
                 cwd=outside, env=env).stdout.split()
    assert pathlib.Path(found[0]).is_relative_to(env_dir) and int(found[1]) >= 11
    _run([str(env_dir / "bin" / "segjax-summary"), "--help"], cwd=outside, env=env)
