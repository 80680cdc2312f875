"""The defense against adversarial evidence (FGVis paper, Sec. 3; ``shared/fgvis-method.md`` Sec. 3).

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
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .errors import DefenseError

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


def _is_nonnegative(func, args, kwargs) -> bool:
    if func in NONNEGATIVE_FUNCTIONS:
        return True
    if func in _HARDTANH:  # nn.ReLU6 is hardtanh(x, 0, 6)
        min_val = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
        return min_val >= 0
    return False


@dataclass
class _Bounds:
    """Bounds of one activation call, tolerance already applied: ``lower <= h(e) <= upper`` passes.
    ``lower`` is ``None`` for activations that cannot go negative."""

    name: str
    lower: torch.Tensor | None
    upper: torch.Tensor


class ActivationFilter(TorchFunctionMode):
    """Record reference activations ``h(x)``, then filter gradients of ``h(e)`` against them.

    Use :meth:`recording` around the forward pass on the image ``x`` and :meth:`filtering` around each
    forward pass on an explanation ``e`` (same batch shape). Outside those blocks the mode is not active.

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
        self._allowed: list[torch.Tensor] = []
        self._buffers: dict[tuple[int, str], torch.Tensor] = {}

    @property
    def num_activations(self) -> int:
        """How many activation calls one forward pass makes (known after :meth:`recording`)."""
        return len(self._bounds)

    @property
    def activation_names(self) -> list[str]:
        """Function name of each activation call, in call order."""
        return [bounds.name for bounds in self._bounds]

    @property
    def settings(self) -> tuple[float, float, bool]:
        """``(rtol, atol, enabled)``: what the recorded bounds depend on besides the model and image."""
        return self.rtol, self.atol, self.enabled

    @property
    def recorded(self) -> tuple[_Bounds, ...]:
        """The bounds of the last :meth:`recording` (immutable tensors; see :meth:`restore`)."""
        return tuple(self._bounds)

    def restore(self, bounds: Sequence[_Bounds]) -> None:
        """Use bounds recorded earlier (by a filter with the same :attr:`settings`, on the same model
        and image) instead of a new :meth:`recording`."""
        self._bounds = list(bounds)

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Forward pass on the image ``x``: store the bounds of every activation call."""
        self._bounds = []
        with self._active("record"):
            yield

    @contextlib.contextmanager
    def filtering(self) -> Iterator[None]:
        """Forward pass on ``e``: attach the gradient filter to every activation call."""
        self._allowed = []
        with self._active("filter"):
            yield
        if self.enabled and self._call != len(self._bounds):
            raise DefenseError(
                f"the model made {self._call} activation calls on the explanation but {len(self._bounds)} "
                "on the image: its forward pass depends on the input, so bounds cannot be matched per call"
            )

    @contextlib.contextmanager
    def _active(self, phase: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self._phase = phase
        self._call = 0
        try:
            with self:
                yield
        finally:
            self._phase = "off"

    def blocked_fraction(self) -> torch.Tensor:
        """Per batch item, the fraction of activation units whose gradient was blocked in the last
        filtered pass, i.e. that left their bounds (``h(e) > h(x)`` for ReLUs): shape ``(N,)``."""
        if not self._allowed:
            return torch.zeros(0)
        passed = torch.stack([_count_per_item(a) for a in self._allowed]).sum(0)
        units = sum(a[0].numel() for a in self._allowed)
        return 1.0 - passed / units

    def layer_blocked_fractions(self) -> torch.Tensor:
        """Per activation call and batch item, the blocked fraction of the last filtered pass:
        shape ``(num_activations, N)``."""
        if not self._allowed:
            return torch.zeros(0, 0)
        return torch.stack([1.0 - _count_per_item(a) / a[0].numel() for a in self._allowed])

    def decisions(self) -> list[torch.Tensor]:
        """Per activation call of the last filtered pass, the pass (``True``) / block decision of every
        unit: bool copies on the CPU, shaped like the activation."""
        return [allowed.bool().cpu() for allowed in self._allowed]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        if func not in ACTIVATION_FUNCTIONS or not isinstance(output, torch.Tensor):
            return output
        index = self._call
        self._call += 1
        if self._phase == "record":
            name = getattr(func, "__name__", str(func))
            self._bounds.append(self._make_bounds(name, output, _is_nonnegative(func, args, kwargs)))
        elif self._phase == "filter":
            self._attach_filter(index, output)
        return output

    def _make_bounds(self, name: str, reference: torch.Tensor, nonnegative: bool) -> _Bounds:
        # New tensors (not views), so later in-place ops on the activation cannot change the bounds.
        value = reference.detach()
        upper = value.clamp(min=0)
        upper = upper + (self.atol + self.rtol * upper)
        if nonnegative:
            return _Bounds(name=name, lower=None, upper=upper)
        lower = value.clamp(max=0)
        return _Bounds(name=name, lower=lower - (self.atol + self.rtol * lower.abs()), upper=upper)

    def _attach_filter(self, index: int, output: torch.Tensor) -> None:
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
        if not output.requires_grad:
            # Inside a custom autograd Function or under no_grad: no gradient flows through it here.
            return
        # Evaluate now (later in-place ops may change ``output``), into a float buffer of the activation's
        # dtype that is reused every step: on the CPU, ``grad * bool_tensor`` takes a type-promotion path
        # ~30x slower than a float multiply, and ``le`` into a preallocated float tensor is ~4x faster than
        # producing a new bool tensor (docs/BENCHMARKS.md).
        allowed = self._buffer((index, "allowed"), output)
        value = output.detach()
        torch.le(value, bounds.upper, out=allowed)
        if bounds.lower is not None:
            allowed.mul_(torch.ge(value, bounds.lower, out=self._buffer((index, "lower"), output)))
        self._allowed.append(allowed)
        output.register_hook(_GradientMask(allowed))

    def _buffer(self, key: tuple[int, str], output: torch.Tensor) -> torch.Tensor:
        """A buffer reused every step (``key``: activation call and purpose), shaped and typed like
        ``output``."""
        buffer = self._buffers.get(key)
        like = (output.shape, output.dtype, output.device)
        if buffer is None or (buffer.shape, buffer.dtype, buffer.device) != like:
            buffer = self._buffers[key] = torch.empty(output.shape, dtype=output.dtype, device=output.device)
        return buffer


class _GradientMask:
    """Tensor hook: multiply the incoming gradient by ``1[bl <= h(e) <= bu]`` (0/1 in the gradient's
    dtype)."""

    __slots__ = ("allowed",)

    def __init__(self, allowed: torch.Tensor) -> None:
        self.allowed = allowed

    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        return grad * self.allowed


def _count_per_item(flags: torch.Tensor) -> torch.Tensor:
    """Number of ones per batch item of a 0/1 float tensor ``(N, ...)`` -> float64 ``(N,)``. Summed in the
    tensor's own dtype (exact for float32 up to 2**24 units per item; ``dtype=float64`` would first copy
    the whole tensor), reducing over the trailing dims to avoid a copy of channels-last activations."""
    if flags.dim() == 1:
        return flags.double()
    # Half-precision sums are not exact beyond 256 (bf16) / 2048 (fp16) ones: accumulate those in float32.
    exact = torch.float32 if flags.dtype in (torch.float16, torch.bfloat16) else None
    return flags.sum(tuple(range(1, flags.dim())), dtype=exact).double()
