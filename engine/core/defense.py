"""The defense against adversarial evidence (FGVis paper, Sec. 3; docs/METHOD.md §3).

For every output ``h`` of a nonlinearity (except the final softmax) the explanation ``e`` may only use
evidence the image ``x`` itself activates:

    h(x) >= 0:  0 <= h(e) <= h(x)        h(x) < 0:  h(x) <= h(e) <= 0

i.e. ``bl = min(0, h(x)) <= h(e) <= bu = max(0, h(x))``. It is enforced by *gradient filtering*: the
forward pass is untouched, and the gradient arriving at ``h(e)`` is multiplied by
``1[bl <= h(e) <= bu]`` (inclusive, independent of the gradient's sign).

How the nonlinearities are found: one :class:`torch.overrides.TorchFunctionMode`, pushed only around the
model's forward passes, sees every activation *function* call -- ``nn.ReLU``/``ReLU6``/... modules (they
call ``F.relu``/``F.hardtanh``/...), functional ``F.relu``/``torch.relu``, tensor methods ``x.relu()`` and
in-place variants alike -- and nothing outside this thread or outside the ``with`` block. Bounds are
keyed by **call order** within a forward pass, so a module used several times gets one set of bounds per
use. TorchScript models run their operations outside Python and cannot be filtered.

Two measured speed-ups (docs/BENCHMARKS.md) keep the result identical:

* **Scope.** The mode costs ~25 us of Python per operation it sees (~200 per EfficientNet pass). When the
  model is given (``recording(model)`` / ``filtering(model)``) and the reference pass shows that every
  activation call happens inside an activation *module* (``nn.ReLU``, ``nn.ReLU6``, ``nn.GELU``...), the
  filtered passes push the mode only inside those modules' ``forward``; otherwise around the whole pass.
* **Fused clamp filter.** For activations of the form ``clamp(x, 0, c)`` -- ReLU (``c`` infinite), ReLU6,
  ``hardtanh(x, 0, c)`` -- the upper bound is stored as ``min(bu, c)`` and the filter replaces the
  activation's own backward: the forward pass writes ``ratio = h(e) / bu`` into a reused buffer, and the
  backward passes the gradient where ``0 < ratio < 1`` (one kernel, ``hardtanh_backward``), which is
  exactly "the activation's derivative is 1 and ``h(e) <= bu``". Every other activation keeps the
  general path: a 0/1 decision buffer in the forward pass and a gradient hook that multiplies by it.
"""

from __future__ import annotations

import contextlib
import math
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from engine.errors import DefenseError

_ACTIVATION_NAMES = (
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "elu", "elu_",
    "selu", "selu_", "celu", "celu_", "gelu", "silu", "mish", "hardswish", "hardsigmoid", "softplus",
    "sigmoid", "sigmoid_", "tanh", "tanh_", "rrelu", "rrelu_", "prelu", "logsigmoid", "softsign",
    "tanhshrink", "threshold", "threshold_",
)  # fmt: skip


def _functions_named(*names: str) -> frozenset:
    """Every function object called ``name`` in ``torch.nn.functional``, ``torch``, ``torch.Tensor`` and
    ``torch._C._nn``: the forms in which the mode sees an activation."""
    owners = (F, torch, torch.Tensor, torch._C._nn)
    return frozenset(f for owner in owners for f in (getattr(owner, n, None) for n in names) if f is not None)


#: Every function object whose output is treated as a nonlinearity output ``h``.
ACTIVATION_FUNCTIONS = _functions_named(*_ACTIVATION_NAMES)

#: Functions whose output is never negative: ``h(e) >= 0 >= bl`` always holds, so only the upper bound
#: needs checking (one comparison instead of three on the hot path).
NONNEGATIVE_FUNCTIONS = _functions_named("relu", "relu_", "relu6", "sigmoid", "sigmoid_", "hardsigmoid", "softplus")
_HARDTANH = _functions_named("hardtanh", "hardtanh_")


_RELU = _functions_named("relu", "relu_")
_RELU6 = _functions_named("relu6")

#: Activation modules whose ``forward`` is the activation call: the mode can be scoped to them.
ACTIVATION_MODULES = tuple(
    getattr(nn, name)
    for name in (
        "ReLU", "ReLU6", "Hardtanh", "LeakyReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Hardswish",
        "Hardsigmoid", "Softplus", "Sigmoid", "Tanh", "RReLU", "PReLU", "LogSigmoid", "Softsign", "Tanhshrink",
        "Threshold",
    )
    if hasattr(nn, name)
)  # fmt: skip


def _hardtanh_range(args, kwargs) -> tuple[float, float]:
    min_val = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
    max_val = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
    return float(min_val), float(max_val)


def _is_nonnegative(func, args, kwargs) -> bool:
    if func in NONNEGATIVE_FUNCTIONS:
        return True
    if func in _HARDTANH:  # nn.ReLU6 is hardtanh(x, 0, 6)
        return _hardtanh_range(args, kwargs)[0] >= 0
    return False


def _clamp_ceiling(func, args, kwargs) -> float | None:
    """``c`` for activations that compute ``clamp(x, 0, c)`` (ReLU: ``inf``; ReLU6: 6; ``hardtanh(x, 0,
    c)``), which the fused filter handles; ``None`` for every other activation call."""
    if "out" in kwargs or not args or not isinstance(args[0], torch.Tensor):
        return None
    if func in _RELU:
        return math.inf
    if func in _RELU6:
        return 6.0
    if func in _HARDTANH:
        low, high = _hardtanh_range(args, kwargs)
        return high if low == 0 and high > 0 else None
    return None


@dataclass
class _Bounds:
    """Bounds of one activation call, tolerance already applied: ``lower <= h(e) <= upper`` passes.
    ``lower`` is ``None`` for activations that cannot go negative. ``fused``: a ``clamp(x, 0, c)``
    activation whose ``upper`` is stored as ``min(bu, c)`` (the same test, as ``h(e) <= c`` always),
    filtered by :class:`_FusedClampFilter`. ``in_module``: the call happened inside an activation module's
    forward (see :data:`ACTIVATION_MODULES`)."""

    name: str
    lower: torch.Tensor | None
    upper: torch.Tensor
    fused: bool = False
    in_module: bool = False
    #: Which of ``"upper"`` / ``"lower"`` have had their memory layout settled (see ``_laid_out``).
    settled: set[str] = field(default_factory=set)


class ActivationFilter(TorchFunctionMode):
    """Record reference activations ``h(x)``, then filter gradients of ``h(e)`` against them.

    Use :meth:`recording` around the forward pass on the image ``x`` and :meth:`filtering` around each
    forward pass on an explanation ``e`` (same batch shape). Outside those blocks the mode is not active.
    Passing the model to both lets the filter scope itself to the model's activation modules (faster; the
    same result). While a block with a model is open, those modules' ``forward`` is wrapped.

    Parameters
    ----------
    rtol, atol
        Tolerance added to both bounds, ``atol + rtol * |bound|``, so that units exactly on their bound
        (every unit at step 0, where ``e == x``) are not blocked by floating-point rounding.
    enabled
        ``False`` records and filters nothing: the identical code path without the defense.
    """

    def __init__(self, *, rtol: float = 1e-5, atol: float = 1e-6, enabled: bool = True) -> None:
        super().__init__()
        self.rtol = rtol
        self.atol = atol
        self.enabled = enabled
        self._bounds: list[_Bounds] = []
        self._phase = "off"
        self._call = 0
        self._module_depth = 0  # > 0 while inside a wrapped activation module's forward
        # Per activation call of the last filtered pass: (tensor, fused). Not fused: the 0/1 pass decision;
        # fused: the ratio h(e) / upper (see _FusedClampFilter).
        self._decided: list[tuple[torch.Tensor, bool]] = []
        self._blocked: list[torch.Tensor] = []  # per call, blocked units per batch item (N,)
        self._counting = True
        self._owner: int | None = None  # the thread whose passes the wrapped modules take part in
        # Per (activation call, purpose): ((shape, stride, dtype, device) it was made for, reused buffer).
        self._buffers: dict[tuple[int, str], tuple[tuple, torch.Tensor]] = {}
        self._scratch_buffer: torch.Tensor | None = None  # shared by all calls, see _scratch
        self._modules_of: tuple[weakref.ref, list[nn.Module]] | None = None

    @property
    def num_activations(self) -> int:
        """How many activation calls one forward pass makes (known after :meth:`recording`)."""
        return len(self._bounds)

    @property
    def activation_names(self) -> list[str]:
        """Function name of each activation call, in call order."""
        return [bounds.name for bounds in self._bounds]

    @property
    def scoped(self) -> bool:
        """Whether :meth:`filtering` with the model can push the mode only inside its activation modules:
        the recorded pass made every activation call inside one."""
        return bool(self._bounds) and all(bounds.in_module for bounds in self._bounds)

    @property
    def settings(self) -> tuple[float, float, bool]:
        """``(rtol, atol, enabled)``: what the recorded bounds depend on besides the model and image."""
        return self.rtol, self.atol, self.enabled

    @property
    def recorded(self) -> tuple[_Bounds, ...]:
        """The bounds of the last :meth:`recording` (their values never change; see :meth:`restore`)."""
        return tuple(self._bounds)

    def restore(self, bounds: Sequence[_Bounds]) -> None:
        """Use bounds recorded earlier (by a filter with the same :attr:`settings`, on the same model
        and image) instead of a new :meth:`recording`."""
        self._bounds = list(bounds)

    @contextlib.contextmanager
    def recording(self, model: nn.Module | None = None) -> Iterator[None]:
        """Forward pass on the image ``x``: store the bounds of every activation call. With ``model``,
        also note which calls happen inside its activation modules (see :attr:`scoped`)."""
        self._bounds = []
        self._modules_of = None  # list the modules afresh for each recorded pass
        with self._wrapped(model), self._active("record"):
            yield

    @contextlib.contextmanager
    def filtering(self, model: nn.Module | None = None, *, count: bool = True) -> Iterator[None]:
        """Forward pass on ``e``: attach the gradient filter to every activation call. With the
        ``model`` the bounds were recorded with and :attr:`scoped`, the mode is active only inside the
        model's activation modules; otherwise around the whole block. ``count=False`` skips counting the
        blocked units (~8 % of a CPU step): :meth:`blocked_fraction` is NaN for that pass."""
        self._decided = []
        self._blocked = []
        self._counting = count
        scoped = model is not None and self.enabled and self.scoped
        with self._wrapped(model if scoped else None), self._active("filter", push=not scoped):
            yield
        if self.enabled and self._call != len(self._bounds):
            raise DefenseError(
                f"the model made {self._call} activation calls on the explanation but {len(self._bounds)} "
                "on the image: its forward pass depends on the input, so bounds cannot be matched per call"
            )

    @contextlib.contextmanager
    def _active(self, phase: str, *, push: bool = True) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self._phase = phase
        self._call = 0
        try:
            if push:
                with self:
                    yield
            else:
                yield
        finally:
            self._phase = "off"

    @contextlib.contextmanager
    def _wrapped(self, model: nn.Module | None) -> Iterator[None]:
        """Wrap the ``forward`` of ``model``'s activation modules for the block: they count their depth
        (what the recording notes as ``in_module``) and, in a filtered pass, run under this mode.
        Restored afterwards, also on errors."""
        if model is None or not self.enabled:
            yield
            return
        wrapped = []
        try:
            for module in self._activation_modules(model):
                own = module.__dict__.get("forward")
                object.__setattr__(module, "forward", self._scoped_forward(module.forward))
                wrapped.append((module, own))
            self._owner = threading.get_ident()
            yield
        finally:
            self._owner = None
            for module, own in wrapped:
                if own is None:
                    object.__delattr__(module, "forward")
                else:
                    object.__setattr__(module, "forward", own)

    def _activation_modules(self, model: nn.Module) -> list[nn.Module]:
        """``model``'s activation modules (listing ~250 modules costs ~0.3 ms: kept from the last recording
        for the filtered passes)."""
        cached = self._modules_of
        if cached is None or cached[0]() is not model:
            modules = [
                module
                for module in model.modules()
                if isinstance(module, ACTIVATION_MODULES) and not isinstance(module, torch.jit.ScriptModule)
            ]
            self._modules_of = cached = (weakref.ref(model), modules)
        return cached[1]

    def _scoped_forward(self, forward: Callable) -> Callable:
        def scoped(*args, **kwargs):
            # Another thread using the model meanwhile, or a nested activation module: a plain call.
            if self._module_depth or threading.get_ident() != self._owner:
                return forward(*args, **kwargs)
            self._module_depth += 1
            try:
                if self._phase == "filter":
                    with self:
                        return forward(*args, **kwargs)
                return forward(*args, **kwargs)
            finally:
                self._module_depth -= 1

        return scoped

    def last_pass(self) -> tuple:
        """What the last filtered pass left for :meth:`blocked_fraction` and :meth:`decisions` (references
        to its reused buffers). A CUDA graph recorded from that pass rewrites the same buffers on each
        replay without running this Python code: :meth:`replayed` makes them current again."""
        return list(self._decided), list(self._blocked), self._counting

    def replayed(self, last_pass: tuple) -> None:
        """A recorded graph of the pass whose :meth:`last_pass` this is has just been replayed."""
        decided, blocked, self._counting = last_pass
        self._decided, self._blocked = list(decided), list(blocked)

    def blocked_fraction(self) -> torch.Tensor:
        """Per batch item, the fraction of activation units whose gradient was blocked in the last
        filtered pass, i.e. that left their bounds (``h(e) > h(x)`` for ReLUs): shape ``(N,)``; NaN if
        that pass did not count (``filtering(count=False)``), empty if it filtered nothing."""
        if not self._decided:
            return torch.zeros(0)
        if not self._counting:
            return torch.full((self._decided[0][0].shape[0],), math.nan, dtype=torch.float64)
        blocked = torch.stack(self._blocked).sum(0, dtype=torch.float64)
        units = sum(tensor[0].numel() for tensor, _ in self._decided)
        return blocked / units

    def layer_blocked_fractions(self) -> torch.Tensor:
        """Per activation call and batch item, the blocked fraction of the last filtered pass:
        shape ``(num_activations, N)``."""
        if not self._decided:
            return torch.zeros(0, 0)
        if not self._counting:
            return torch.full((len(self._decided), self._decided[0][0].shape[0]), math.nan, dtype=torch.float64)
        return torch.stack(
            [
                count.double() / tensor[0].numel()
                for count, (tensor, _) in zip(self._blocked, self._decided, strict=True)
            ]
        )

    def decisions(self) -> list[torch.Tensor]:
        """Per activation call of the last filtered pass, the pass (``True``) / block decision of every
        unit: bool copies on the CPU, shaped like the activation."""
        return [(~(tensor > 1) if fused else tensor.bool()).cpu() for tensor, fused in self._decided]

    def _keep_decision(self, index: int, tensor: torch.Tensor, fused: bool) -> None:
        """Keep the decision tensor of activation call ``index`` and, if this pass counts, its blocked units
        per batch item in a reused ``(N,)`` buffer. Counted inside the pass, so that on CUDA the count is
        part of the recorded graph."""
        tensor = tensor.reshape(1) if tensor.dim() == 0 else tensor
        self._decided.append((tensor, fused))
        if not self._counting:
            return
        per_item = tensor[(slice(None),) + (0,) * (tensor.dim() - 1)]  # shaped (N,)
        count = self._buffer((index, "blocked"), per_item, _count_dtype(tensor))
        if fused:  # blocked where ratio > 1, via a float buffer (comparing into bool and summing bools is slow)
            _count_per_item(torch.gt(tensor, 1, out=self._scratch(tensor)), out=count)
        else:  # ``tensor`` holds 1 where the unit passed
            _count_per_item(tensor, out=count).neg_().add_(tensor[0].numel())
        self._blocked.append(count)

    def _scratch(self, like: torch.Tensor) -> torch.Tensor:
        """A float buffer shaped like ``like``, shared by all activation calls (used one at a time)."""
        flat = self._scratch_buffer
        if flat is None or flat.numel() < like.numel() or (flat.dtype, flat.device) != (like.dtype, like.device):
            flat = self._scratch_buffer = torch.empty(like.numel(), dtype=like.dtype, device=like.device)
        if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
            # In ``like``'s layout (see _laid_out): a channels-last view of the same storage.
            n, c, h, w = like.shape
            return flat[: like.numel()].view(n, h, w, c).permute(0, 3, 1, 2)
        return flat[: like.numel()].view(like.shape)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in ACTIVATION_FUNCTIONS:
            return func(*args, **kwargs)
        if self._phase == "filter":
            return self._filter(func, args, kwargs)
        output = func(*args, **kwargs)
        if self._phase == "record" and isinstance(output, torch.Tensor):
            self._call += 1
            self._bounds.append(self._make_bounds(func, args, kwargs, output))
        return output

    def _make_bounds(self, func, args, kwargs, reference: torch.Tensor) -> _Bounds:
        # New tensors (not views), so later in-place ops on the activation cannot change the bounds.
        name = getattr(func, "__name__", str(func))
        in_module = self._module_depth > 0
        value = reference.detach()
        upper = value.clamp(min=0)
        upper = upper + (self.atol + self.rtol * upper)
        ceiling = _clamp_ceiling(func, args, kwargs)
        if ceiling is not None:
            if math.isfinite(ceiling):
                upper = upper.clamp_(max=ceiling)
            return _Bounds(name=name, lower=None, upper=upper, fused=True, in_module=in_module)
        if _is_nonnegative(func, args, kwargs):
            return _Bounds(name=name, lower=None, upper=upper, in_module=in_module)
        lower = value.clamp(max=0)
        lower = lower - (self.atol + self.rtol * lower.abs())
        return _Bounds(name=name, lower=lower, upper=upper, in_module=in_module)

    def _filter(self, func, args, kwargs):
        """One activation call on the explanation: run it with the gradient filter attached."""
        if _clamp_ceiling(func, args, kwargs) is None:
            output = func(*args, **kwargs)
            if not isinstance(output, torch.Tensor):
                return output  # not counted as an activation call (as in the recording)
            index, bounds = self._next_bounds(output)
        else:
            index, bounds = self._next_bounds(args[0])
            if bounds.fused and torch.is_grad_enabled() and args[0].requires_grad:
                ratio = self._buffer((index, "ratio"), args[0])
                upper = self._laid_out(bounds, "upper", args[0])
                output = _FusedClampFilter.apply(args[0], ratio, upper, func, args[1:], kwargs)
                self._keep_decision(index, ratio, fused=True)
                return output
            output = func(*args, **kwargs)
        if not output.requires_grad:
            # Inside a custom autograd Function or under no_grad: no gradient flows through it here.
            return output
        # Evaluate now (later in-place ops may change ``output``), into a float buffer of the activation's
        # dtype that is reused every step: on the CPU, ``grad * bool_tensor`` takes a type-promotion path
        # ~30x slower than a float multiply, and ``le`` into a preallocated float tensor is ~4x faster than
        # producing a new bool tensor (docs/BENCHMARKS.md).
        allowed = self._buffer((index, "allowed"), output)
        value = output.detach()
        torch.le(value, self._laid_out(bounds, "upper", value), out=allowed)
        if bounds.lower is not None:
            lower = self._laid_out(bounds, "lower", value)
            allowed.mul_(torch.ge(value, lower, out=self._buffer((index, "lower"), output)))
        self._keep_decision(index, allowed, fused=False)
        output.register_hook(_GradientMask(allowed))
        return output

    def _next_bounds(self, output: torch.Tensor) -> tuple[int, _Bounds]:
        """Index and bounds of the next activation call, whose output has ``output``'s shape."""
        index = self._call
        self._call += 1
        if index >= len(self._bounds):
            raise DefenseError(
                f"activation call {index + 1} on the explanation has no counterpart on the image: the "
                "model's forward pass depends on the input"
            )
        bounds = self._bounds[index]
        if output.shape != bounds.upper.shape:
            raise DefenseError(
                f"activation call {index + 1} ({bounds.name}) has shape {tuple(output.shape)} on the "
                f"explanation but {tuple(bounds.upper.shape)} on the image"
            )
        return index, bounds

    def _buffer(self, key: tuple[int, str], output: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A buffer reused every step (``key``: activation call and purpose), shaped like ``output`` and
        typed like it or as ``dtype``."""
        like = (output.shape, output.stride(), dtype or output.dtype, output.device)
        kept = self._buffers.get(key)
        if kept is None or kept[0] != like:
            # In ``output``'s memory layout where it is dense (see _laid_out).
            kept = self._buffers[key] = (like, torch.empty_like(output, dtype=like[2]))
        return kept[1]

    def _laid_out(self, bounds: _Bounds, name: str, like: torch.Tensor) -> torch.Tensor:
        """``bounds``' ``name`` bound (``"upper"`` / ``"lower"``) in the memory layout of ``like``, the
        activation on the explanation. The layout is settled at the bound's first filtered pass: where it
        differs, the bound is replaced then by a copy in ``like``'s layout (same values; also where a
        :class:`~engine.core.reference.ReferenceCache` holds the bounds) and never replaced again, so a
        CUDA graph recorded later always reads a live tensor. A later pass in yet another layout (not
        seen) would filter correctly on the slower mixed-layout path.

        Measured on EfficientNet-Lite0 (CPU): the recording pass (no gradient) gets contiguous activations
        from oneDNN, the filtered pass channels-last ones; an elementwise kernel over tensors of both
        layouts takes a strided path ~3x slower, which was 8 ms of a 63 ms defended step
        (docs/BENCHMARKS.md)."""
        bound = getattr(bounds, name)
        if name in bounds.settled:
            return bound
        bounds.settled.add(name)
        if bound.stride() == like.stride():
            return bound
        laid_out = torch.empty_like(like, dtype=bound.dtype)
        if laid_out.stride() != like.stride():  # not a dense layout: stay as recorded (correct, slower)
            return bound
        laid_out.copy_(bound)
        setattr(bounds, name, laid_out)
        return laid_out


class _FusedClampFilter(torch.autograd.Function):
    """A ``clamp(x, 0, c)`` activation (``func``) whose backward is its derivative times the filter, in one
    kernel. Forward: ``h = func(x, *args)`` unchanged, and ``ratio = h / upper`` into the reused buffer
    ``ratio`` (``upper = min(bu, c) > 0``). Backward: the gradient passes where ``0 < ratio < 1``, i.e.
    where ``0 < h < c`` (the derivative is 1) and ``h < bu`` (the filter), and is 0 elsewhere. A ratio of
    exactly 1 (``h`` equal to the tolerance-widened bound) counts as blocked, and a ratio within one
    rounding step of 1 may round across it: both far inside the tolerance (1e-5)."""

    @staticmethod
    def forward(ctx, x, ratio, upper, func, args, kwargs):
        output = func(x, *args, **kwargs)
        if output is x:  # in-place activation
            ctx.mark_dirty(x)
        torch.div(output, upper, out=ratio)
        ctx.save_for_backward(ratio)
        return output

    @staticmethod
    def backward(ctx, grad):
        (ratio,) = ctx.saved_tensors
        return torch.ops.aten.hardtanh_backward(grad, ratio, 0.0, 1.0), None, None, None, None, None


class _GradientMask:
    """Tensor hook: multiply the incoming gradient by ``1[bl <= h(e) <= bu]`` (0/1 in the gradient's
    dtype)."""

    __slots__ = ("allowed",)

    def __init__(self, allowed: torch.Tensor) -> None:
        self.allowed = allowed

    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        return grad * self.allowed


def _count_dtype(flags: torch.Tensor) -> torch.dtype:
    # Half-precision sums are not exact beyond 256 (bf16) / 2048 (fp16) ones: accumulate those in float32.
    return torch.float32 if flags.dtype in (torch.float16, torch.bfloat16) else flags.dtype


def _count_per_item(flags: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Number of ones per batch item of a 0/1 float tensor ``(N, ...)`` -> ``(N,)`` (float32 for half
    precision, else the tensor's dtype; into ``out`` if given). Summed in that dtype (exact for float32 up
    to 2**24 units per item; ``dtype=float64`` would first copy the whole tensor), reducing over the
    trailing dims to avoid a copy of channels-last activations."""
    if flags.dim() == 1:
        return flags.to(_count_dtype(flags)) if out is None else out.copy_(flags)
    dims = tuple(range(1, flags.dim()))
    if out is None:
        return flags.sum(dims, dtype=_count_dtype(flags))
    return torch.sum(flags, dims, dtype=_count_dtype(flags), out=out)
