"""The interfaces plugins implement: EncoderCell, DecoderCell, Model, Task, Dataset, Loader.

Paper: Prémont-Schwarz et al., "Recurrent Ladder Networks", NIPS 2017, section 2, eqs. (1)-(3).
Levels are numbered 0..L-1 from the bottom; level l's encoder output is e_l(t), its decoder
output d_l(t). Tensor layouts (B = batch, T = steps) are written here once:

* a step's input ``x_t``: ``(B, *step_shape)``; ``step_shape`` is ``(C, H, W)`` for video frames,
  ``(C, L)`` for 1-D sequences such as piano rolls (C=1, L=88 pitches), ``(D,)`` for vectors;
* a whole input ``x``: ``(B, T, *step_shape)`` (video ``(B, T, C, H, W)``, piano roll ``(B, T, C, L)``,
  vectors ``(B, T, D)``), or ``(B, *step_shape)`` for iterative inference on a static input;
* a level's output ``e_l(t)`` and ``d_l(t)``: ``(B, *out_shape)`` with ``out_shape`` = ``(C, H, W)``,
  ``(C, L)`` or ``(D,)``; ``d_l`` always has the shape of ``e_l`` because it feeds level l's
  encoder at the next step;
* a model's outputs over T steps: a dict of ``(B, T, ...)`` tensors by name (``encoder.<l>``,
  ``decoder.<l>``, ``heads.<name>``, or whatever names a model declares); one step's outputs
  are ``(B, ...)``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np
import torch
from torch import Tensor, nn

Shape = tuple[int, ...]
CellState = tuple[Tensor, ...]


class EncoderCell(nn.Module, abc.ABC):
    """Level l's bottom-up unit, eqs. (1)-(2): ``(e_l(t), s_l(t)) = f(e_{l-1}(t), d_l(t-1), s_l(t-1))``.

    Built by its factory as ``factory(options, in_shape=..., top_down=...)``: ``in_shape`` is the
    shape of ``e_{l-1}`` (or of the input), ``top_down`` says whether ``d_l(t-1)`` will be given
    (False for the "no decoder-to-encoder connections" ablation and for ladders without decoder).
    The subclass sets ``self.in_shape`` and ``self.out_shape``.

    **Shape rejection**: a factory given an ``in_shape`` it cannot handle (a conv cell given a
    vector, an LSTM given nothing it can pool) raises ``ValueError`` or
    ``rladder.registry.ContractError`` with a message that says what it needs. ``rladder check``
    reports it located at the config field (``model.levels[1].encoder: ...``); the conformance kit
    skips that probe shape. Any other exception is a bug.

    ``forward(bottom_up, top_down_prev, state) -> (output, new_state)``: ``bottom_up`` is
    ``(B, *in_shape)``, ``top_down_prev`` is ``(B, *out_shape)`` or None, ``state`` is a tuple of
    tensors from ``init_state`` or the previous step (empty for stateless cells). A cell keeps no
    state of its own between calls: everything carried in time goes through ``state``.
    """

    in_shape: Shape
    out_shape: Shape

    def init_state(self, batch: int, like: Tensor) -> CellState:
        """s_l(0): zeros by default (``like`` gives device and dtype). Stateless cells return ()."""
        return ()

    @abc.abstractmethod
    def forward(self, bottom_up: Tensor, top_down_prev: Tensor | None, state: CellState) -> tuple[Tensor, CellState]:
        ...


class DecoderCell(nn.Module, abc.ABC):
    """Level l's stateless top-down unit, eq. (3): ``d_l(t) = g_l(e_l(t), d_{l+1}(t))``.

    Built as ``factory(options, lateral_shape=..., top_down_shape=...)``; ``top_down_shape`` is
    None at the top level. The cell itself resamples ``d_{l+1}`` (``(B, *top_down_shape)``) to
    level l's shape. ``forward(lateral, top_down) -> (B, *lateral_shape)``.

    A factory rejects shapes it cannot handle by raising ``ValueError`` or
    ``rladder.registry.ContractError``, exactly as an ``EncoderCell`` factory does.
    """

    lateral_shape: Shape
    top_down_shape: Shape | None

    @abc.abstractmethod
    def forward(self, lateral: Tensor, top_down: Tensor | None) -> Tensor:
        ...


class Model(nn.Module, abc.ABC):
    """What a model is to the rest of rladder: the trainer, tasks, ``predict``, ``viz``, ``check``
    and the conformance kit rely on exactly this, and nothing else.

    A ``model`` component's factory returns a ``LadderSpec`` (built into an ``RLadder``) or an
    instance of a ``Model`` subclass (a wrapper such as RTagger, which runs a ladder inside). A
    model runs one step at a time with an explicit state, so a sequence can be processed at once
    or in chunks with the state carried, and a rollout can feed predictions back in.

    Implement:

    * ``input_shape``: the step shape it takes (an attribute, e.g. ``(1, 32, 32)``);
    * ``output_names()``: every output it can produce, e.g. ``["encoder.0", ..., "heads.frame"]``;
      names of heads (read-outs for tasks) start with ``heads.``;
    * ``init_state(batch, like)``: the state before the first step (``like`` gives device and dtype);
    * ``step(x_t, state, keep)``: one step on ``x_t`` ``(B, *input_shape)``; returns the outputs of
      this step, ``(B, ...)`` each (all of them, or those named in ``keep``, already canonical),
      and the state for the next step.

    Provided, and overridable: ``forward`` (unrolls ``step`` over the T axis, or ``steps``
    iterations on a static input), ``canonical`` (aliases of output names: the identity here),
    ``parts`` (named sub-modules whose outputs and gradients the trainer's instruments watch),
    ``detach_state`` (truncated back-propagation through time), ``summary`` (lines for
    ``rladder check``).
    """

    input_shape: Shape

    @abc.abstractmethod
    def output_names(self) -> list[str]:
        ...

    @abc.abstractmethod
    def init_state(self, batch: int, like: Tensor) -> Any:
        ...

    @abc.abstractmethod
    def step(self, x_t: Tensor, state: Any = None, keep: Collection[str] | None = None) -> tuple[dict[str, Tensor], Any]:
        ...

    def canonical(self, name: str) -> str:
        """The declared name an alias stands for (an RLadder maps ``encoder.-1`` to its top level)."""
        return name

    def resolve_keep(self, keep: Collection[str] | None) -> set[str] | None:
        """``keep`` as canonical names; an unknown name is an error that lists the outputs."""
        if keep is None:
            return None
        names = set(self.output_names())
        out = {self.canonical(k) for k in keep}
        unknown = sorted(k for k in keep if self.canonical(k) not in names)
        if unknown:
            raise ValueError(f"{type(self).__name__} has no output {', '.join(map(repr, unknown))}; "
                             f"its outputs are {', '.join(self.output_names())}")
        return out

    def head_outputs(self) -> list[str]:
        """The outputs that are read-outs for tasks (``heads.<name>``)."""
        return [n for n in self.output_names() if n.startswith("heads.")]

    def parts(self) -> dict[str, nn.Module]:
        """Named sub-modules whose outputs (RMS) and parameters (gradient norm) are logged in training."""
        return {}

    def detach_state(self, state: Any) -> Any:
        """The state cut from the autograd graph (every tensor in it detached)."""
        return map_tensors(lambda t: t.detach(), state)

    def summary(self) -> list[str]:
        """Lines describing the model's structure, printed by ``rladder check``."""
        return []

    def forward(self, x: Tensor, state: Any = None, *, steps: int | None = None,
                keep: Collection[str] | None = None) -> tuple[dict[str, Tensor], Any]:
        """Unroll over time or over inference iterations.

        ``x`` is ``(B, T, *input_shape)`` (one step per element of T), or ``(B, *input_shape)``
        with ``steps=n`` for iterative inference on a static input. Returns a dict of
        ``(B, T, ...)`` outputs (all of them, or those named in ``keep``) and the final state,
        which a later call can continue from: T steps at once equal the same steps in chunks.
        """
        keep = self.resolve_keep(keep)
        static = steps is not None
        self.check_input(x, static)
        frames = [x] * steps if static else x.unbind(1)
        if not frames:
            raise ValueError("forward() needs at least one step")
        per_step: list[dict[str, Tensor]] = []
        for x_t in frames:
            out, state = self.step(x_t, state, keep)
            per_step.append(out)
        return {k: torch.stack([o[k] for o in per_step], dim=1) for k in per_step[0]}, state

    def check_input(self, x: Tensor, static: bool) -> None:
        lead = 1 if static else 2
        shape = tuple(self.input_shape)
        if tuple(x.shape[lead:]) != shape or x.dim() != lead + len(shape):
            want = "(B, " + ("" if static else "T, ") + ", ".join(map(str, shape)) + ")"
            raise ValueError(f"{type(self).__name__} input has shape {tuple(x.shape)}; expected {want}")


def zip_tensors(fn: Callable[[Tensor, Tensor], Tensor], a: Any, b: Any) -> Any:
    """``fn(x, y)`` for every pair of tensors at the same place in two states of the same structure."""
    if isinstance(a, Tensor):
        return fn(a, b)
    if isinstance(a, tuple) and hasattr(a, "_fields"):                      # a named tuple
        return type(a)(*(zip_tensors(fn, x, y) for x, y in zip(a, b, strict=True)))
    if isinstance(a, tuple | list):
        return type(a)(zip_tensors(fn, x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping):
        return {k: zip_tensors(fn, a[k], b[k]) for k in a}
    if attrs.has(type(a)):
        return attrs.evolve(a, **{f.name: zip_tensors(fn, getattr(a, f.name), getattr(b, f.name))
                                  for f in attrs.fields(type(a)) if f.init})
    return a


def tensor_leaves(value: Any) -> list[Tensor]:
    """Every tensor inside a state, in a fixed order (for checkpoints: plain tensors load safely)."""
    leaves: list[Tensor] = []
    map_tensors(lambda t: leaves.append(t) or t, value)
    return leaves


def map_tensors(fn: Callable[[Tensor], Tensor], value: Any) -> Any:
    """Apply ``fn`` to every tensor inside nested (named) tuples, lists, dicts and attrs instances."""
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):              # a named tuple
        return type(value)(*(map_tensors(fn, v) for v in value))
    if isinstance(value, tuple | list):
        return type(value)(map_tensors(fn, v) for v in value)
    if isinstance(value, Mapping):
        return {k: map_tensors(fn, v) for k, v in value.items()}
    if attrs.has(type(value)):
        return attrs.evolve(value, **{f.name: map_tensors(fn, getattr(value, f.name))
                                      for f in attrs.fields(type(value)) if f.init})
    return value


@attrs.frozen
class DataSpec:
    """What a dataset yields, declared without loading it.

    A batch is a dict of tensors. ``x`` always holds the model input: ``(B, T, *step_shape)``
    with ``T = seq_len``, or ``(B, *step_shape)`` when ``static`` (the same input is shown at
    every one of ``seq_len`` iterations). ``keys`` documents every key and its layout, for
    example ``{"x": "(B,T,1,32,32) float32 in [0,1]", "y": "(B,) int64 class at the last step"}``.
    """

    modality: Literal["video", "sequence", "vector"]
    step_shape: Shape
    seq_len: int
    keys: Mapping[str, str]
    num_classes: int = 0
    splits: tuple[str, ...] = ("train", "val", "test")
    static: bool = False

    def __attrs_post_init__(self) -> None:
        ranks = {"video": 3, "sequence": 2, "vector": 1}
        if len(self.step_shape) != ranks[self.modality]:
            raise ValueError(f"{self.modality} data needs a step_shape of rank {ranks[self.modality]}, "
                             f"got {self.step_shape}")
        if "x" not in self.keys:
            raise ValueError("a DataSpec must declare the input key 'x'")

    def dummy_batch(self, batch: int = 2, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """A random batch with the declared shapes: ``x`` uniform in [0, 1), ``y`` random classes."""
        lead = (batch,) if self.static else (batch, self.seq_len)
        out = {"x": torch.rand(*lead, *self.step_shape, generator=generator)}
        if self.num_classes and "y" in self.keys:
            out["y"] = torch.randint(0, self.num_classes, (batch,), generator=generator)
        return out


@attrs.frozen
class Needs:
    """What a task reads: model outputs (``"heads.frame"``, ``"encoder.3"``) and batch keys.

    ``supervised``: the task uses labels (it sees only labelled samples of a batch with a
    ``label_mask``). ``noise``: the task is meaningless without input corruption
    (``train.input_noise > 0``). Besides the dataset's keys, every training batch holds
    ``x_uncorrupted``: the input before ``train.input_noise`` was added.
    """

    outputs: tuple[str, ...] = ()
    batch: tuple[str, ...] = ()
    supervised: bool = False
    noise: bool = False


@attrs.frozen
class TaskOptions:
    """Options every task has; a task's own options class derives from this one."""

    weight: float = attrs.field(default=1.0, metadata={"help": "Weight of this cost in the total loss."})
    weight_ramp_steps: int = attrs.field(
        default=0, validator=attrs.validators.ge(0),
        metadata={"help": "Training steps over which the weight moves linearly from weight_ramp_from x weight to "
                          "weight (0 = the weight is constant)."})
    weight_ramp_from: float = attrs.field(
        default=0.0, validator=attrs.validators.ge(0.0),
        metadata={"help": "The weight at step 0 as a fraction of weight, when weight_ramp_steps > 0 (0: the cost "
                          "starts switched off; above 1: the weight decreases)."})

    def weight_factor(self, step: int) -> float:
        """The fraction of ``weight`` in force at training step ``step`` (0-based)."""
        if self.weight_ramp_steps == 0:
            return 1.0
        done = min(1.0, step / self.weight_ramp_steps)
        return self.weight_ramp_from + (1.0 - self.weight_ramp_from) * done


@attrs.frozen
class Metric:
    """A headline metric of a task: printed after validation and test, drawn in ``curves.png``.

    ``name`` is its key in ``compute_metrics()``; ``unit`` is shown on axes and in tables
    ("%", "x1e-5", "nats/step"); ``better`` says which direction is an improvement;
    ``baseline`` names another metric of the same task drawn beside it as a reference (for
    example copying the last frame as the prediction).
    """

    name: str
    title: str
    unit: str = ""
    better: Literal["min", "max"] = "min"
    baseline: str = ""


class Task(nn.Module, abc.ABC):
    """A cost attached to named outputs of the model, its metrics and how they are shown (paper section 2).

    Built as ``factory(options, spec=DataSpec, label=str)``. The training loss is
    ``sum(task.weight * task.weight_scale * task.loss(outputs, batch))`` over tasks, where
    ``weight_scale`` is 1 unless the options ramp the weight (``TaskOptions.weight_ramp_*``).
    ``outputs`` maps names to ``(B, T, ...)`` tensors (``encoder.l``, ``decoder.l``,
    ``heads.<name>``); ``batch`` is the dataset's batch dict. A batch may carry ``label_mask`` (B,)
    bool: supervised tasks then use the labelled samples only, unsupervised tasks use all. A task may
    own modules or state (a mean teacher owns an EMA copy of the model); they are saved with
    checkpoints like any ``nn.Module`` state.

    Metrics: ``update_metrics`` runs on every batch of an evaluation, in every process;
    ``compute_metrics`` must return values **reduced over all processes** of a multi-process run.
    torchmetrics objects do that by themselves; for plain tensors use ``rladder.core.reduce_sum``.
    ``metrics()`` names the headline metrics (the others are saved but not printed).

    Presentation: ``predictions`` turns outputs into human-facing values (``rladder predict``,
    pictures); ``next_input`` says how a prediction becomes the model's next input (closed-loop
    ``predict --rollout``); ``figures`` may draw pictures for ``rladder viz``.
    """

    def __init__(self, label: str, weight: float = 1.0):
        super().__init__()
        self.label = label
        self.weight = weight
        # The fraction of ``weight`` in force (a weight ramp, TaskOptions.weight_ramp_*); a tensor so that
        # a compiled step reads the new value without recompiling; not saved (it is a function of the step).
        self.register_buffer("weight_scale", torch.ones(()), persistent=False)
        self.weight_ramp: Callable[[int], float] | None = None

    @abc.abstractmethod
    def needs(self) -> Needs:
        ...

    @abc.abstractmethod
    def loss(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        """A scalar cost (unweighted)."""

    def update_metrics(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> None:
        """Accumulate evaluation metrics over a batch (default: none)."""

    def compute_metrics(self) -> dict[str, float]:
        """The accumulated metrics as plain floats (default: none)."""
        return {}

    def reset_metrics(self) -> None:
        """Forget accumulated metrics."""

    def bind(self, model: nn.Module) -> None:
        """Called once with the built model, before any weights are loaded (a mean teacher copies it here)."""

    def prepare(self, model: nn.Module, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Called before the forward pass with the model and the batch; returns extra batch entries
        (targets from extra no-grad passes: a clean pass, a teacher pass). Default: none."""
        return {}

    def extra_models(self) -> dict[str, nn.Module]:
        """Other models to evaluate with every task, by name (a mean teacher returns its teacher)."""
        return {}

    def start_step(self, step: int) -> None:
        """Put the weight of training step ``step`` (0-based) in force (a no-op without a weight ramp)."""
        if self.weight_ramp is not None:
            self.weight_scale.fill_(self.weight_ramp(step))

    def after_optimizer_step(self, model: nn.Module, step: int) -> None:
        """Called after every optimizer step (a mean teacher updates its EMA here)."""

    def metrics(self) -> list[Metric]:
        """The headline metrics, in order of importance (default: none; every metric is still saved)."""
        return []

    def predictions(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Human-facing predictions for `rladder predict` and pictures, e.g. ``{"next_frame": (B,T,C,H,W)
        in [0,1]}`` or ``{"class_probs": (B,T,K)}`` (default: none)."""
        return {}

    def next_input(self, predictions: Mapping[str, Tensor]) -> Tensor | None:
        """For a closed-loop rollout: the model's input at step t+1 made from the predictions of step t,
        ``(B, T, *step_shape)``, or None when this task predicts no input (default)."""
        return None

    def sample_input(self, predictions: Mapping[str, Tensor], generator: torch.Generator | None = None) -> Tensor | None:
        """For `rladder generate`: a draw of the input at step t+1 from the distribution the predictions
        of step t give, ``(B, T, *step_shape)`` (``next_step``: every value a Bernoulli draw), using
        ``generator``. Default: ``next_input`` (no sampling: the prediction itself)."""
        return self.next_input(predictions)

    def figures(self, batch: Mapping[str, Tensor], outputs: Mapping[str, Tensor],
                predictions: Mapping[str, Tensor]) -> dict[str, Any]:
        """Pictures for `rladder viz` of a few evaluation samples: ``{name: matplotlib Figure}``, saved
        as ``<name>.png`` in the run folder (default: none)."""
        return {}


@attrs.frozen
class SequenceLayout:
    """How a dataset stores sequences of different lengths (``Dataset.sequence_layout``), so that a
    loader can cut them into chunks without knowing what they hold.

    The stored arrays named in ``time_keys`` hold whole sequences padded along axis 1, and
    ``length_key`` ``(N,)`` holds each sequence's number of model steps. Model steps ``[s, s + n)``
    are stored steps ``[s, s + n + lookahead)`` (``lookahead = 1`` where ``to_batch`` makes a step's
    input and its next-step target from one stored sequence). A window cut out this way, with the
    steps of the window that exist written into ``length_key``, is itself a batch in stored form:
    ``to_batch`` turns it into a model batch whose ``step_mask`` (B, T) marks those steps.
    """

    time_keys: tuple[str, ...]
    length_key: str = "length"
    lookahead: int = 0


class Dataset(abc.ABC):
    """A dataset: a ``DataSpec`` and, per split, its samples in stored form.

    Built as ``factory(options)``. ``arrays(split)`` returns the split in memory as a dict of
    numpy arrays whose first axis is the sample (compact dtypes such as uint8 are fine);
    ``to_batch`` turns a batch of those (as tensors, ``(B, ...)``) into the model's batch
    (float conversion, input/target slicing). The same stored form is what WebDataset shards
    hold, so in-memory and sharded loading give identical batches.
    """

    spec: DataSpec

    @abc.abstractmethod
    def arrays(self, split: str) -> dict[str, np.ndarray]:
        ...

    def to_batch(self, stored: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return dict(stored)

    def dummy_batch(self, batch: int = 2, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """A random batch with every key a task may read (``rladder check``); override to add keys."""
        return self.spec.dummy_batch(batch, generator)

    def figures(self, batch: Mapping[str, Tensor], predictions: Mapping[str, Tensor]) -> dict[str, Any]:
        """Pictures for `rladder viz` of a few samples with the tasks' predictions (``predictions``:
        every task's ``predictions()``, e.g. ``next_frame`` or ``class_probs``): ``{name: matplotlib
        Figure}``, saved as ``<name>.png`` (default: none)."""
        return {}

    def sequence_layout(self) -> SequenceLayout | None:
        """How whole sequences of different lengths are stored, for loaders that cut them into chunks
        (the ``chunked`` loader; truncated back-propagation through time). Default None: fixed-length
        samples."""
        return None

    def read_primer(self, source: str, steps: int = 0) -> Tensor | None:
        """For `rladder generate`: the model inputs ``(T, *step_shape)`` that start a generated sequence,
        read from ``source`` (a file, or a name the dataset knows, such as ``test:0`` for a sample of
        a split), its first ``steps`` steps (0: all). Default None: the launcher reads a ``.npy``/``.npz``
        file of inputs itself."""
        return None

    def write_generated(self, sequence: Tensor, primer_steps: int, out: Path) -> list[Path]:
        """For `rladder generate`: save a generated sequence of model inputs ``(T, *step_shape)``, whose
        first ``primer_steps`` steps came from the primer, in the dataset's own form (music: a MIDI
        file and a piano-roll picture); returns the files written. Default: ``out`` with suffix
        ``.npy`` holding the inputs."""
        path = Path(out).with_suffix(".npy")
        np.save(path, sequence.detach().cpu().numpy())
        return [path]

    def check_split(self, split: str) -> None:
        if split not in self.spec.splits:
            from rladder.registry import ConfigError
            raise ConfigError(f"unknown split {split!r}; this dataset has {', '.join(self.spec.splits)}")


class Loader(abc.ABC):
    """Batches of one split of a dataset, as model batches (``dataset.to_batch`` applied), on CPU.

    Built as ``factory(options, dataset=, split=, batch_size=, train=, seed=, rank=, world=, labels=,
    data_config=, device=)``: ``labels`` is a ``LabelPlan`` or None (semi-supervised runs),
    ``data_config`` the resolved ``[data]`` table, ``device`` the training device.
    ``batch_size`` is the global batch; with ``world`` processes each yields its
    ``batch_size // world`` share of every global batch, so the data order does not depend on
    the number of processes. A training loader repeats forever, reshuffling every epoch from
    ``seed`` and the epoch number; an evaluation loader makes one ordered pass.
    ``state_dict``/``load_state_dict`` record the position, so a resumed run sees the same batches.

    Long sequences (music) are cut into chunks for truncated back-propagation through time: such a
    loader adds ``carry`` (B,) bool to every batch, True where sample i continues the sequence that
    sample i of the previous batch ended (the trainer and the evaluation then carry the model's
    state over, detached), False where a new sequence starts; it keeps the batch size and the
    order of these slots fixed. Padding inside a chunk is marked by ``step_mask`` (B, T). The
    ``chunked`` loader does this for any dataset with a ``sequence_layout``.
    """

    @abc.abstractmethod
    def __iter__(self):
        ...

    @abc.abstractmethod
    def __len__(self) -> int:
        """Batches per epoch for this process."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


def to_device(batch: Mapping[str, Any], device: torch.device | str, non_blocking: bool = False) -> dict[str, Any]:
    """Move every tensor of a batch dict to ``device``."""
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, Tensor) else v for k, v in batch.items()}


def reduce_sum(*tensors: Tensor) -> list[Tensor]:
    """Sum each tensor over the processes of a multi-process run (unchanged in a single process).

    For task metrics kept as plain tensors: accumulate sums and counts in ``update_metrics``, then
    ``total, count = reduce_sum(total, count)`` in ``compute_metrics``. Every process must call it.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return list(tensors)
    out = []
    for t in tensors:
        t = t.clone()
        dist.all_reduce(t)
        out.append(t)
    return out
