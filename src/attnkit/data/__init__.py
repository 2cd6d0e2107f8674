"""attnkit.data: tasks with deterministic, disjoint splits and no downloads.

>>> from attnkit.data import get_task
>>> task = get_task("numbers")            # English -> German number words
>>> batch = next(task.batches("train", 32))
"""

from . import dates, g2p, numbers, shakespeare, synthetic, vision  # noqa: E402,F401  (registers the tasks)
from .base import (
                   SPLITS,
                   TASKS,
                   Batch,
                   Example,
                   Seq2SeqTask,
                   Task,
                   get_task,
                   list_tasks,
                   register_task,
                   task_option_defaults,
)
from .metrics import chrf, closest_reference, edit_distance, sequence_metrics
from .vocab import BOS, EOS, PAD, UNK, Vocab

__all__ = [
    "TASKS",
    "SPLITS",
    "Batch",
    "Example",
    "Task",
    "Seq2SeqTask",
    "Vocab",
    "PAD",
    "BOS",
    "EOS",
    "UNK",
    "get_task",
    "task_option_defaults",
    "list_tasks",
    "register_task",
    "edit_distance",
    "closest_reference",
    "sequence_metrics",
    "chrf",
]
