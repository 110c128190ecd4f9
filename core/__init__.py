"""rladder.core: interfaces, the RLadder engine, configs, assembly, training and the launcher.

Core never imports plugins: concrete cells, decoders, tasks and datasets arrive through the
registry (entry-point group ``rladder``).

This module is the public face for plugin authors: everything a plugin needs is importable from
``rladder.core`` (and ``rladder.registry``), never from a core submodule:

* interfaces: ``EncoderCell``, ``DecoderCell``, ``Model``, ``Task`` (with ``Needs``, ``Metric``,
  ``TaskOptions``), ``Dataset`` (with ``DataSpec``, ``SequenceLayout``),
  ``Loader``;
* the engine and its specs: ``RLadder``, ``LadderSpec``, ``LevelSpec``, ``HeadSpec``, ``FeedbackSpec``;
* building blocks: ``layers`` (conv, norm, activation, pooling, ``layers.Resample``);
* running a model on a batch: ``model_outputs``; metric reduction across processes: ``reduce_sum``;
* data plumbing: ``LabelPlan``, ``IndexStream`` (semi-supervised batches), ``read_manifest``,
  ``shard_location`` (WebDataset shards), ``files`` (atomic writes);
* recipes for ``rladder reproduce``: ``Recipe``, ``Row``, ``Cell``, ``row_config``; ``merge`` of configs.
"""

from . import kinds  # noqa: F401 - declares the component kinds to the registry
from . import files, layers
from .interfaces import (CellState, DataSpec, Dataset, DecoderCell, EncoderCell, Loader, Metric, Model, Needs,
                         SequenceLayout, Shape, Task, TaskOptions, map_tensors, reduce_sum, to_device)
from .heads import Head, HeadSpec
from .ladder import FeedbackLink, FeedbackSpec, LadderState, Level, RLadder
from .assemble import LadderSpec, LevelSpec, Run, build_ladder, build_model, build_tasks, count_parameters
from .config import merge
from .labels import IndexStream, LabelPlan
from .objective import model_outputs
from .reproduce import Cell, Recipe, Row, row_config
from .shards import location as shard_location, read_manifest

__all__ = [
    "CellState", "Cell", "DataSpec", "Dataset", "DecoderCell", "EncoderCell", "FeedbackLink", "FeedbackSpec", "Head",
    "HeadSpec", "IndexStream", "LabelPlan", "LadderSpec", "LadderState", "Level", "LevelSpec", "Loader", "Metric",
    "Model", "Needs", "RLadder", "Recipe", "Row", "Run", "SequenceLayout", "Shape", "Task", "TaskOptions",
    "build_ladder", "build_model", "build_tasks", "count_parameters", "files", "layers", "map_tensors", "merge",
    "model_outputs", "read_manifest", "reduce_sum", "row_config", "shard_location", "to_device",
]
