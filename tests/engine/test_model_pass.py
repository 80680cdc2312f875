"""ModelPass: when the step's model pass runs eagerly and when from a recorded graph.

The CUDA graph itself is exercised by the ``gpu`` tests; here a stand-in recording (a replay that
rewrites fixed output tensors, as a graph does) and a clock that advances by what each path costs
make the trial's decision deterministic on the CPU.
"""

from __future__ import annotations

import pytest
import torch

from engine.core.model_pass import ModelPass


class Paths:
    """An eager pass and a recordable 'graph' of it, each advancing a shared clock by its cost."""

    def __init__(self, eager_cost: float, graph_cost: float, fail_to_record: bool = False) -> None:
        self.now = 0.0
        self.eager_cost, self.graph_cost = eager_cost, graph_cost
        self.fail_to_record = fail_to_record
        self.log: list[str] = []
        self.counts: list[bool] = []
        self.value = 0.0

    def clock(self) -> float:
        return self.now

    def run(self, count: bool):
        self.value += 1
        self.now += self.eager_cost
        self.log.append("eager")
        self.counts.append(count)
        return (torch.tensor(self.value),)

    def record(self):
        if self.fail_to_record:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.log.append("record")
        outputs = (torch.zeros(()),)

        def replay() -> None:
            self.value += 1
            self.now += self.graph_cost
            self.log.append("replay")
            outputs[0].fill_(self.value)

        return replay, outputs

    def model_pass(self, **kwargs) -> ModelPass:
        return ModelPass(self.run, self.record, clock=self.clock, **kwargs)


def run_steps(model_pass: ModelPass, steps: int) -> list[float]:
    return [float(model_pass(step % 10 == 0)[0]) for step in range(1, steps + 1)]


def test_without_a_recorder_every_step_is_eager_and_counts_as_asked():
    paths = Paths(eager_cost=1.0, graph_cost=0.1)
    model_pass = ModelPass(paths.run)
    run_steps(model_pass, 12)
    assert paths.log == ["eager"] * 12 and model_pass.path == "eager"
    assert paths.counts == [step % 10 == 0 for step in range(1, 13)]


def test_a_clearly_faster_graph_wins_after_one_round():
    paths = Paths(eager_cost=0.0224, graph_cost=0.0041)  # EfficientNet-Lite0 batch 1 on the H200
    model_pass = paths.model_pass()
    values = run_steps(model_pass, 9)
    # warm-up eager, record + first replay, one eager and one replay timed, then replays only
    assert paths.log == ["eager", "record", "replay", "eager", "replay"] + ["replay"] * 5
    assert model_pass.path == "graph" and "kept" in model_pass.summary
    assert values == list(range(1, 10))  # every step returned its own pass's outputs
    assert model_pass.timings == {"eager": [pytest.approx(0.0224)], "graph": [pytest.approx(0.0041)]}


def test_a_slightly_faster_graph_is_kept_after_two_rounds():
    paths = Paths(eager_cost=0.010, graph_cost=0.008)
    model_pass = paths.model_pass()
    run_steps(model_pass, 9)
    assert paths.log == ["eager", "record", "replay", "eager", "replay", "eager", "replay"] + ["replay"] * 3
    assert model_pass.path == "graph" and len(model_pass.timings["eager"]) == 2


def test_a_clearly_slower_graph_is_dropped_after_one_round():
    paths = Paths(eager_cost=0.010, graph_cost=0.030)
    model_pass = paths.model_pass()
    run_steps(model_pass, 8)
    assert paths.log == ["eager", "record", "replay", "eager", "replay"] + ["eager"] * 4
    assert model_pass.path == "eager"


def test_a_slower_graph_is_dropped_and_the_run_goes_on_eagerly():
    paths = Paths(eager_cost=0.0138, graph_cost=0.0153)  # VGG16 batch 16 on the H200
    model_pass = paths.model_pass()
    values = run_steps(model_pass, 9)
    assert model_pass.path == "eager" and "dropped" in model_pass.summary
    assert len(model_pass.timings["graph"]) == 2  # not decisive after one round
    assert paths.log[7:] == ["eager"] * 3 and values == list(range(1, 10))
    assert model_pass._replay is None  # the graph (and its memory) is released


def test_a_tie_within_the_margin_goes_to_the_graph():
    paths = Paths(eager_cost=0.0100, graph_cost=0.0104)
    model_pass = paths.model_pass(margin=0.05)
    run_steps(model_pass, 8)
    assert model_pass.path == "graph"


def test_no_trial_rounds_keeps_the_graph_at_once():
    paths = Paths(eager_cost=0.001, graph_cost=1.0)
    model_pass = paths.model_pass(rounds=0)
    run_steps(model_pass, 5)
    assert paths.log == ["eager", "record", "replay", "replay", "replay", "replay"]
    assert model_pass.path == "graph" and not model_pass.timings["eager"]


def test_a_failed_recording_is_reported_and_the_run_stays_eager():
    paths = Paths(eager_cost=0.02, graph_cost=0.004, fail_to_record=True)
    model_pass = paths.model_pass()
    values = run_steps(model_pass, 6)
    assert paths.log == ["eager"] * 6 and values == list(range(1, 7))
    assert model_pass.path == "eager"
    assert len(model_pass.notes) == 1 and "could not record" in model_pass.notes[0]
