"""The model's part of every optimisation step: run eagerly, or replayed from a CUDA graph where that is
measured to be faster.

A GPU running a small model at a small batch is bound by kernel launches, and recording the step's
forward and backward pass once as a CUDA graph removes the launch and Python cost of every kernel
(docs/PERFORMANCE.md, H200: EfficientNet-Lite0 batch 1, 4.1 ms per defended step against 22.4 ms eager).
Where the GPU is busy with arithmetic the graph gains nothing, and it was measured *slower* (VGG16 batch
16: 15.3 ms against 13.8 ms), while it also holds a private memory pool. So the graph is not trusted
blindly: after it is recorded, a few steps of both paths are timed in turn and the faster path is kept.
Those trial steps are ordinary optimisation steps (both paths compute the same pass), so no work is
wasted beyond the eager steps' extra time.

No model or Qt knowledge here: :class:`ModelPass` runs the callables it is given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

Outputs = tuple[torch.Tensor, ...]
Replay = Callable[[], None]

#: Timed trial steps per path before the choice (at most).
TRIAL_ROUNDS = 2
#: After a round, a path this many times faster than the other wins at once.
DECISIVE_RATIO = 1.5
#: Calls before the path is settled: one eager warm-up, the recording, then the trial.
CALLS_BEFORE_SETTLED = 2 + 2 * TRIAL_ROUNDS


class ModelPass:
    """Call it once per optimisation step: ``model_pass(count) -> outputs``.

    Parameters
    ----------
    run
        ``run(count) -> outputs``: the eager pass; ``count`` asks the defense to count blocked units.
    record
        ``record() -> (replay, outputs)``: record the pass as a graph (counting on every replay);
        ``replay()`` rewrites ``outputs`` in place. ``None``: always eager (the CPU, or graphs switched off).
    rounds
        Trial steps per path before deciding; 0 keeps the graph without a trial.
    margin
        The graph is kept unless the eager pass was faster by more than this fraction: a replay also
        leaves the CPU free (for the GUI), so a tie goes to the graph.
    decisive
        After each round (one step of each path), a path ``decisive`` times faster than the other wins
        without further rounds: where the graph wins clearly (a GPU bound by launches, eager passes
        ~5x slower) the trial costs one eager step.
    synchronize, clock
        Wait for the device / read the time (seconds), around each timed trial step.

    Sequence: call 1 is eager (it warms up the kernels and allocates the defense's buffers, which the
    graph then reads and writes at fixed addresses); call 2 records the graph and replays it (untimed:
    the first launch uploads the graph); the next ``2 * rounds`` calls alternate eager and replay and are
    timed (fewer if a round is ``decisive``); from then on the faster path (:attr:`path`) runs. A
    recording that fails leaves the run eager and says so in :attr:`notes`. Outputs of a replay are the
    graph's own tensors: valid until the next call.
    """

    def __init__(
        self,
        run: Callable[[bool], Outputs],
        record: Callable[[], tuple[Replay, Outputs]] | None = None,
        *,
        rounds: int = TRIAL_ROUNDS,
        margin: float = 0.05,
        decisive: float = DECISIVE_RATIO,
        synchronize: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._run = run
        self._record = record
        self.rounds = rounds
        self.margin = margin
        self.decisive = decisive
        self._synchronize = synchronize
        self._clock = clock
        #: ``"eager"`` or ``"graph"`` once decided; ``None`` before (warm-up and trial).
        self.path: str | None = "eager" if record is None else None
        #: Seconds of each timed trial step, per path.
        self.timings: dict[str, list[float]] = {"eager": [], "graph": []}
        #: What was decided and why, for the log and the benchmarks; ``None`` until then.
        self.summary: str | None = None
        #: For the user (``Explanation.warnings``): a graph that could not be recorded.
        self.notes: list[str] = []
        self._calls = 0
        self._replay: Replay | None = None
        self._outputs: Outputs = ()

    def __call__(self, count: bool) -> Outputs:
        self._calls += 1
        if self.path == "eager" or self._calls == 1:
            return self._run(count)
        if self.path == "graph":
            return self._replayed()
        if self._replay is None:
            return self._start_graph(count)
        path = "eager" if len(self.timings["eager"]) <= len(self.timings["graph"]) else "graph"
        self._synchronize()
        started = self._clock()
        outputs = self._run(count) if path == "eager" else self._replayed()
        self._synchronize()
        self.timings[path].append(self._clock() - started)
        if len(self.timings["graph"]) == len(self.timings["eager"]):  # a round is complete
            graph, eager = min(self.timings["graph"]), min(self.timings["eager"])
            if len(self.timings["graph"]) >= self.rounds or max(graph, eager) >= self.decisive * min(graph, eager):
                self._settle()
        return outputs

    def _replayed(self) -> Outputs:
        assert self._replay is not None, "a replay before the graph was recorded"
        self._replay()
        return self._outputs

    def _start_graph(self, count: bool) -> Outputs:
        assert self._record is not None, "no recorder: the path is eager from the start"
        try:
            self._replay, self._outputs = self._record()
        except Exception as exc:  # an optimisation only: never fail the run for it
            message = f"could not record the optimisation step as a CUDA graph ({exc}); ran without it"
            log.warning("%s", message)
            self.notes.append(message)
            self.path = "eager"
            return self._run(count)
        if self.rounds <= 0:
            self.path = "graph"
            self.summary = "CUDA graph kept (no trial)"
        return self._replayed()

    def _settle(self) -> None:
        graph, eager = min(self.timings["graph"]), min(self.timings["eager"])
        keep = graph <= eager * (1 + self.margin)
        self.summary = (
            f"CUDA graph {'kept' if keep else 'dropped'}: {graph * 1e3:.2f} ms per replayed pass against "
            f"{eager * 1e3:.2f} ms eager (best of {len(self.timings['graph'])})"
        )
        log.info("%s", self.summary)
        self.path = "graph" if keep else "eager"
        if not keep:  # release the graph and its memory pool
            self._replay, self._outputs = None, ()


def record_cuda_graph(run: Callable[[], Outputs], device: torch.device) -> tuple[Replay, Outputs]:
    """Record ``run()`` as a CUDA graph on ``device`` after two warm-up runs on a side stream (as PyTorch
    requires) -> ``(replay, outputs)``. Everything ``run`` reads must stay at its address (inputs are
    updated in place), and the outputs are rewritten in place by every ``replay()``."""
    side = torch.cuda.Stream(device=device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(2):
            run()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = run()
    return graph.replay, outputs
