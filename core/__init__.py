"""rladder.core: interfaces, the RLadder engine, configs, assembly, training and the launcher.

Core never imports plugins: concrete cells, decoders, tasks and datasets arrive through the
registry (entry-point group ``rladder``).
"""

from . import kinds  # noqa: F401 - declares the component kinds to the registry
from .interfaces import CellState, DataSpec, Dataset, DecoderCell, EncoderCell, Loader, Needs, Shape, Task, TaskOptions, to_device
from .heads import Head, HeadSpec
from .ladder import FeedbackLink, FeedbackSpec, LadderState, Level, RLadder
from .assemble import LadderSpec, LevelSpec, Run, build_ladder, build_model, build_tasks, count_parameters

__all__ = [
    "CellState", "DataSpec", "Dataset", "DecoderCell", "EncoderCell", "FeedbackLink", "FeedbackSpec", "Head", "Loader", "HeadSpec", "LadderSpec",
    "LadderState", "Level", "LevelSpec", "Needs", "RLadder", "Run", "Shape", "Task", "TaskOptions", "build_ladder",
    "build_model", "build_tasks", "count_parameters", "to_device",
]
