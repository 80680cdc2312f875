"""The job queue: Run queues one job per game, the worker runs them one after another, Cancel stops the
running one after its current step (its partial result is kept)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from engine import ConfigError

from ..jobs_panel import JobsPanel
from ..method_panel import MethodPanel
from ..records import JobProgress, JobSpec, ResultRecord, next_id
from ..stall import StallMonitor
from ..worker import Worker
from ..workspace import Workspace
from . import Host

log = logging.getLogger(__name__)


class JobQueue(QObject):
    """Queues jobs in the worker and follows them in the workspace and the Jobs panel.

    Signals
    -------
    progress(JobProgress, JobSpec)
        A throttled report of the running job (its ``preview`` is a small evidence map).
    stopped(JobSpec)
        A job ended without a result (failed, or cancelled before its first step): its preview goes.
    ended(bool)
        The queue ran empty (after the last result joined the workspace); ``True`` when its last job
        ended by cancel or failure.
    """

    progress = Signal(object, object)
    stopped = Signal(object)
    ended = Signal(bool)

    def __init__(
        self,
        workspace: Workspace,
        worker: Worker,
        host: Host,
        panel: JobsPanel,
        method: MethodPanel,
        target: Callable[[], int | None],
        colormap: Callable[[], str],
    ) -> None:
        super().__init__(host)  # a child of the window: it goes when the window goes
        self.workspace, self.worker, self.host = workspace, worker, host
        self.panel, self.method, self.target, self.colormap = panel, method, target, colormap
        self.stall_monitor = StallMonitor(self)
        self.closing = False  # set while the window closes: failures are not shown any more
        # Bound methods of this QObject, never lambdas: PySide6 runs a lambda in the emitting (worker) thread.
        worker.job_started.connect(self._on_started)
        worker.job_progress.connect(self._on_progress)
        worker.job_finished.connect(self._on_finished)
        worker.job_failed.connect(self._on_failed)
        panel.cancel_requested.connect(self.cancel)
        panel.cancel_all_requested.connect(self.cancel_all)

    def run(self) -> list[JobSpec]:
        """Queue one job per chosen game for the current image and target; returns them."""
        workspace = self.workspace
        image, target, info = workspace.current, self.target(), workspace.model_info
        if image is None or info is None:
            return []
        if target is None:
            self.host.show_error("No target class", "Choose the class to explain in the Predictions panel.")
            return []
        try:
            config = self.method.config()
        except ConfigError as exc:
            self.host.show_error("Invalid method settings", str(exc))
            return []
        queued = []
        for game in self.method.games():
            job = JobSpec(
                next_id(),
                image.id,
                image.name,
                image.pixels,
                target,
                info.labels[target],
                game,
                self.method.defense.isChecked(),
                config,
                image_path=image.path,
                image_sha256=image.sha256,
            )
            workspace.queue(job)
            self.panel.add(job)
            self.worker.submit_job(job)
            queued.append(job)
        self.stall_monitor.start()
        if workspace.batch_running:
            self.host.show_status("A batch is running: the job starts when it ends.", 8000)
        return queued

    def cancel(self) -> None:
        """Stop the running job after its current step (its partial result is kept); with none running
        (the queue waits for a batch), drop the next queued job."""
        job_id = self.workspace.next_to_cancel()
        if job_id is not None:
            self.worker.cancel(job_id)

    def cancel_all(self) -> None:
        for job_id in list(self.workspace.jobs):
            self.worker.cancel(job_id)

    def stop(self) -> None:
        """The window closes: stop watching the event loop; failures from now on are not shown."""
        self.closing = True
        self.stall_monitor.stop()

    def _on_started(self, job_id: int) -> None:
        self.workspace.job_started(job_id)
        self.panel.started(job_id)

    def _on_progress(self, report: JobProgress) -> None:
        self.workspace.last_progress = report
        self.panel.progress(report, colormap=self.colormap())
        job = self.workspace.jobs.get(report.job_id)
        if job is None:
            return
        self.progress.emit(report, job)
        current = self.workspace.current
        if current is None or job.image_id != current.id or report.preview is None:
            return  # the status bar follows the image on screen (a throttled report carries a preview)
        self.host.show_status(
            f"{job.title()}: step {report.step}/{report.total}, p = {report.target_prob:.3f}, "
            f"mask mean {report.mask_mean:.3f}, ETA {report.eta_s:.0f} s"
        )

    def _on_finished(self, result: ResultRecord) -> None:
        # The queue's bookkeeping first: whatever happens while showing the result, the job is over.
        empty = self._done(result.job.id, "cancelled (partial result)" if result.cancelled else "done", result.steps)
        self.workspace.add_result(result)
        warned = f" (warning: {'; '.join(result.warnings)})" if result.warnings else ""
        self.host.show_status(f"{result.title()}: {result.status}, p(e) = {result.prob_explanation:.3f}{warned}", 8000)
        if empty:
            self.ended.emit(result.cancelled)

    def _on_failed(self, job_id: int, message: str) -> None:
        cancelled = message.startswith("cancelled")
        job = self.workspace.jobs.get(job_id)
        empty = self._done(job_id, "cancelled" if cancelled else f"failed: {message}")
        if job is not None:
            self.stopped.emit(job)
        if not cancelled and not self.closing:
            self.host.show_error("The explanation failed", message)
        if empty:
            self.ended.emit(True)

    def _done(self, job_id: int, state: str, steps: int | None = None) -> bool:
        """The job is over: out of the queue and marked in the panel. Returns whether the queue is empty."""
        self.workspace.job_ended(job_id)
        self.panel.finished(job_id, state, steps)
        if self.workspace.jobs:
            return False
        self.stall_monitor.stop()
        log.info("event loop longest stall during jobs: %.1f ms", self.stall_monitor.max_stall_ms)
        return True
