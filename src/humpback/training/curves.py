"""Training curves: the loss, learning rate and gradient norm of every logged optimizer step, written
by dvclive as `dvc plots` data.

A run's curves directory holds what dvclive writes: `plots/metrics/<name>.tsv` (columns `step` and
the value; step = the optimizer step, 1 first) and `metrics.json` (the last values). The stage's
dvc.yaml lists the directory as an output and the top-level `plots:` draw it; dvclive itself writes
no dvc.yaml, no report and no experiment.

dvclive writes only files here: its Live is built without its repository integration
(`_files_only_live`). The stage runs under `dvc repro` or `dvc exp run`, and DVC records the
outputs and saves the experiment itself. The files go to the run's scratch directory, and after the
model is saved they are copied beside the output and renamed into place. A rerun starts from
nothing, and a killed run leaves the previous curves (or none), never a mix.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from transformers.integrations import DVCLiveCallback

# the Trainer's keys for one logged step, in its own naming (dvclive keeps these file names)
CURVES = ("loss", "learning_rate", "grad_norm")


def _files_only_live(directory: Path):
    """A dvclive Live that writes its files to `directory` and nothing else.

    Without this, dvclive 3 opens the DVC repository at the working directory to save experiments,
    write dvc.yaml, git-add its files under `dvc exp run` and post to DVC Studio, none of which the
    stage needs. That integration also fails in a git repository without commits (a fresh
    `git init` then `dvc repro`: scm.get_rev raises), and in a git repository without DVC it runs
    `dvc init`."""
    from dvclive import Live

    class FilesOnly(Live):
        def _init_dvc(self):
            self._dvc_file = self._init_dvc_file()  # the one attribute the integration sets that Live reads

        def _init_studio(self):
            self._studio_events_to_skip.update(("start", "data", "done"))

    return FilesOnly(dir=str(directory), resume=False, report=None, save_dvc_exp=False, dvcyaml=False)


class CurvesCallback(DVCLiveCallback):
    """transformers' dvclive callback, one point per logged step of each of CURVES, keyed by the
    optimizer step. Only the main process writes: the Live exists there alone (the Trainer's loss
    is already the mean over the processes, and the gradient norm that of the whole gradient)."""

    def __init__(self, directory: str | Path):
        super().__init__(live=None, log_model=False)
        self.directory = Path(directory)

    def setup(self, args, state, model):
        self._initialized = True
        if state.is_world_process_zero and self.live is None:
            shutil.rmtree(self.directory, ignore_errors=True)
            # No log_params: the training arguments hold the scratch directory's random name, and
            # the stage's params are params.yaml's. resume=False also drops anything left in the folder.
            self.live = _files_only_live(self.directory)

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        # Only a step's logs carry the loss; the end of training logs a summary (runtime, mean loss)
        # that is no point of a curve.
        if not logs or "loss" not in logs:
            return
        if not self._initialized:
            self.setup(args, state, model)
        if self.live is not None:
            self.live.step = state.global_step  # the optimizer step, not the count of logs
        super().on_log(args, state, control, model=model, logs={k: logs[k] for k in CURVES if k in logs}, **kwargs)


def publish(written: Path, directory: str | Path) -> None:
    """Put the curves dvclive wrote in `written` at `directory`: copied beside it, then renamed in."""
    directory = Path(directory)
    staging = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(written, staging)
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
