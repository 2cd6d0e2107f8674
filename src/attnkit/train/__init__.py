"""attnkit.train: the model-agnostic training loop, checkpoints and run directories.

>>> from attnkit.data import get_task
>>> from attnkit.models import build_model, model_config_for_task
>>> from attnkit.train import train, load_run
>>> task = get_task("reverse")
>>> model = build_model(model_config_for_task("seq2seq", task, attention="bahdanau"))
>>> result = train(task, model, steps=200, out_dir="runs/reverse")     # doctest: +SKIP
>>> task, model, meta = load_run("runs/reverse")                        # doctest: +SKIP

Options not given to :func:`train` come from :mod:`attnkit.presets` (``TRAIN_DEFAULTS`` and the
tuned (task, model) pairs).
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, write_atomic
from .loop import (
    RunState,
    TrainOptions,
    lr_at,
    make_optimizer,
    resolve_device,
    resolve_options,
    train,
)
from .meta import checkpoint_meta, model_config, model_name
from .progress import Progress
from .report import write_report
from .run import default_run_dir, load_run, resolve_run_dir, resume_run

__all__ = [
    "train",
    "TrainOptions",
    "RunState",
    "resolve_options",
    "load_run",
    "resume_run",
    "default_run_dir",
    "resolve_run_dir",
    "write_report",
    "save_checkpoint",
    "load_checkpoint",
    "write_atomic",
    "CheckpointError",
    "Progress",
    "lr_at",
    "make_optimizer",
    "resolve_device",
    "model_config",
    "model_name",
    "checkpoint_meta",
]
