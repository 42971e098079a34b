"""What a training run needs from its workdir: one writer at a time, room for a checkpoint,
and a clean stop on the signals schedulers preempt with.

- `WorkdirLock`: `workdir/.lock` (host, pid, start time), held with `fcntl.flock` so the
  kernel drops it when the holder dies; a later run takes a dead run's lock with a warning.
- `check_writable`: the workdir takes a file and has room for the next checkpoint.
- `StopSignals`: SIGTERM/SIGINT ask the loop to finish its step, checkpoint and exit.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import pathlib
import shutil
import signal
import socket
import sys
import threading

LOCK_NAME = ".lock"


class WorkdirError(OSError):
    """The workdir cannot take this run: held by another run, unwritable or full."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after checkpointing; `exit_code` is 128 + the signal."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class WorkdirLock:
    """One training run per workdir. Readers (evaluate, predict, export) take no lock."""

    def __init__(self, workdir: str | pathlib.Path):
        self.path = pathlib.Path(workdir) / LOCK_NAME
        self._file = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(self.path)
            handle.close()
            raise WorkdirError(
                f"{self.path.parent} is in use by another training run ({holder}); nothing "
                "was changed. Stop that run first, or train in another --workdir.") from None
        handle.seek(0)
        previous = handle.read().strip()
        if previous:
            print(f"Taking over {self.path} from a run that is no longer running "
                  f"({_describe(previous)})", file=sys.stderr, flush=True)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({
            "host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "argv": sys.argv}) + "\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        """Removes the lock file (a finished run leaves the workdir as it found it)."""
        if self._file is not None:
            self.path.unlink(missing_ok=True)
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        return f"host {info['host']}, pid {info['pid']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"


def _read_holder(path: pathlib.Path) -> str:
    try:
        return _describe(path.read_text(encoding="utf-8").strip())
    except OSError:
        return "holder unknown"


def check_writable(workdir: str | pathlib.Path, checkpoint_bytes: int, keep: int) -> None:
    """Fails before compiling when the workdir cannot take a file, or has less room than
    two checkpoints (the one being written beside the last complete one)."""
    workdir = pathlib.Path(workdir)
    probe = workdir / ".write_test"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise WorkdirError(f"cannot write in --workdir {workdir}: {err.strerror or err}. "
                           "Choose a writable directory.") from None
    free = shutil.disk_usage(workdir).free
    needed = 2 * checkpoint_bytes
    if free < needed:
        raise WorkdirError(
            f"--workdir {workdir} has {free / 2**20:.0f} MiB free; a checkpoint of this run "
            f"takes {checkpoint_bytes / 2**20:.0f} MiB and a save needs room for "
            f"{needed / 2**20:.0f} MiB (config.keep_checkpoints={keep} keeps "
            f"{keep * checkpoint_bytes / 2**20:.0f} MiB). Free space or use another --workdir.")


class StopSignals:
    """SIGTERM and SIGINT set `received` instead of killing the process, so the loop can
    finish its step and checkpoint. A second signal says a save is under way; a third
    restores the default action and delivers itself (the previous checkpoint stays
    intact: orbax commits a step by renaming a finished directory)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None  # this process's first signal (set by the handler)
        self.stopped_by: int | None = None  # the signal every process agreed to stop on
        self._count = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def agreed(self, step: int, every: int) -> bool:
        """Whether to stop after `step`: at once on one process; on several, all of them
        agree at the next step that is a multiple of `every` (one host exchange then)."""
        import jax

        if jax.process_count() == 1:
            self.stopped_by = self.received
            return self.received is not None
        if step % every:
            return False
        import numpy as np
        from jax.experimental import multihost_utils

        # The handler may fire during the exchange: read the flag once, never overwrite it.
        mine = self.received
        everyone = multihost_utils.process_allgather(np.int32(mine or 0))
        self.stopped_by = int(np.max(everyone)) or None
        return self.stopped_by is not None

    def interrupt(self, step: int, directory) -> None:
        """Says what was saved and how to resume, then raises TrainingInterrupted."""
        import jax

        signum = self.stopped_by or self.received
        name = signal.Signals(signum).name if signum else "a stop request"
        message = (f"Stopped by {name} after step {step}: checkpoint {step} (params, "
                   f"BatchNorm statistics, optimizer state, input position) is in "
                   f"{directory}. Rerun the same command to resume.")
        if jax.process_index() == 0:
            print(message, flush=True)
        raise TrainingInterrupted(message, 128 + (signum or signal.SIGTERM))

    def _handle(self, signum, frame) -> None:
        self._count += 1
        name = signal.Signals(signum).name
        if self._count == 1:
            self.received = signum
            print(f"\n{name} received: finishing this step, then saving a checkpoint "
                  "(send it again twice to stop without one).", file=sys.stderr, flush=True)
        elif self._count == 2:
            print(f"{name} received again: still saving; once more stops without this "
                  "checkpoint (the previous one stays intact).", file=sys.stderr, flush=True)
        else:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
