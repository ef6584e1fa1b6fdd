"""The model thread: a bounded FIFO of restore and detect jobs, run one at a time.

The ROUTER socket belongs to the I/O thread (ZeroMQ sockets are not thread-safe),
so the worker never touches it: everything it has to say (progress, results,
errors) goes over an inproc PUSH socket as ``[job_id, identity, header, *frames]``
and the I/O thread forwards it. Cancellation is cooperative: a flag on the job,
checked at every progress report of the pipeline, which reports after every
layer.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import zmq

from oldphoto_model import Cancelled, InputError, RestoreOptions, Restorer, is_oom
from oldphoto_model.archs.detector import ScratchDetector
from oldphoto_model.detect import DEFAULT_TILE, detect, model_threshold, restore_detected
from oldphoto_model.pipeline import Progress

from . import protocol
from .wire import E_CANCELLED, E_INTERNAL, E_OOM, E_UNSUPPORTED, T_OK, T_PROGRESS

log = logging.getLogger("oldphoto.server")

class Busy(Exception):
    """The queue is full, or the client has as many jobs as it may; the message says which."""


#: Tile side of the detector's retry after an out-of-memory error.
LOW_MEMORY_TILE = 256


@dataclass
class Job:
    """One restore or detect request. ``identity``/``request_id`` route its replies.
    ``detect``: a restore without a mask finds its scratches first; ``threshold`` and
    ``probability`` belong to a detect job (``kind`` "detect")."""

    identity: bytes
    request_id: Any
    image: np.ndarray
    mask: Optional[np.ndarray]
    options: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = "cancelled by request"
    state: str = "queued"
    submitted: float = field(default_factory=time.monotonic)
    kind: str = "restore"
    detect: bool = False
    threshold: Optional[float] = None
    probability: bool = False

    @property
    def reply_bytes(self) -> int:
        """Bytes of the data frames its final reply will carry."""
        if self.kind == "detect":
            h, w = self.image.shape[:2]
            return h * w * (2 if self.probability else 1)
        return self.image.nbytes


class Worker(threading.Thread):
    """Runs queued jobs on one Restorer; talks to the I/O thread via ``events_address``."""

    def __init__(self, restorer: Restorer, context: zmq.Context, events_address: str,
                 queue_size: int, per_client: int = 2, info: Optional[dict] = None,
                 detector: Optional[ScratchDetector] = None) -> None:
        super().__init__(name="oldphoto-worker", daemon=True)
        self.restorer = restorer
        self.detector = detector
        self.context = context
        self.events_address = events_address
        self.queue_size = queue_size
        self.per_client = per_client
        self.meta_base = dict(info or {})
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._current: Optional[Job] = None
        self._stopping = False
        self.stats: collections.Counter[str] = collections.Counter()

    # -- called from the I/O thread ----------------------------------------
    def submit(self, job: Job) -> int:
        """Queue ``job``; returns how many jobs run or wait before it. Raises Busy."""
        with self._cond:
            if self._stopping:
                raise Busy("the server is shutting down")
            mine = sum(j.identity == job.identity for j in self._queue) + (
                self._current is not None and self._current.identity == job.identity)
            if mine >= self.per_client:    # one client cannot fill the queue for everyone
                self._count("busy")
                raise Busy(f"this connection already has {mine} jobs waiting or running (at most "
                           f"{self.per_client}): wait for one to finish")
            idle = self._current is None and not self._queue
            if len(self._queue) >= self.queue_size and not idle:
                self._count("busy")
                raise Busy(f"the server is busy ({self.queue_size} jobs waiting): try again later")
            ahead = len(self._queue) + (self._current is not None)
            self._queue.append(job)
            self._cond.notify()
        return ahead

    def cancel(self, job_id: str, reason: str = "cancelled by request") -> tuple[Optional[str], Optional[Job]]:
        """Cancel a job. Returns (state it was in, the job if it was removed from the
        queue: the caller then sends its final reply) or (None, None) if unknown."""
        with self._cond:
            cur = self._current
            if cur is not None and cur.id == job_id:
                cur.cancel_reason = reason
                cur.cancel.set()
                return "running", None
            for job in self._queue:
                if job.id == job_id:
                    self._queue.remove(job)
                    job.state = "cancelled"
                    job.cancel_reason = reason
                    job.cancel.set()
                    self._count("dropped" if reason.startswith("client") else "cancelled")
                    return "queued", job
        return None, None

    def _count(self, key: str) -> None:
        with self._cond:     # re-entrant: also called with the lock held
            self.stats[key] += 1

    def stats_snapshot(self) -> dict[str, int]:
        """A copy of the job counters (completed, cancelled, dropped, failed, busy)."""
        with self._cond:
            return dict(self.stats)

    def owed_bytes(self, identity: bytes) -> int:
        """Bytes of the results still to come for ``identity``'s waiting and running jobs
        (a result is as big as its image)."""
        with self._cond:
            jobs = list(self._queue) + ([self._current] if self._current is not None else [])
            return sum(j.reply_bytes for j in jobs if j.identity == identity)

    def identities_with_jobs(self) -> set:
        """The routing ids of every client with a job waiting or running."""
        with self._cond:
            ids = {j.identity for j in self._queue}
            if self._current is not None:
                ids.add(self._current.identity)
            return ids

    def queue_state(self) -> dict[str, int]:
        """How many jobs wait and whether one runs."""
        with self._cond:
            return {"queued": len(self._queue), "running": int(self._current is not None)}

    def stop(self, wait: bool = True, timeout: float = 10.0) -> tuple[list[Job], Optional[Job]]:
        """Cancel the running job, empty the queue, end the thread (joined when ``wait``).
        Returns (the jobs that were waiting, the job that was running): the caller
        owes the waiting ones their final reply; the running one sends its own when
        its model step ends."""
        with self._cond:
            self._stopping = True
            running = self._current
            if running is not None:
                running.cancel_reason = "the server is shutting down"
                running.cancel.set()
            queued = list(self._queue)
            self._queue.clear()
            for job in queued:
                job.state = "cancelled"
                self._count("cancelled")
            self._cond.notify_all()
        if wait:
            self.join(timeout)
        return queued, running

    # -- the worker thread ---------------------------------------------------
    def run(self) -> None:
        out = self.context.socket(zmq.PUSH)
        out.setsockopt(zmq.LINGER, 0)
        out.connect(self.events_address)
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        return
                    job = self._queue.popleft()
                    job.state = "running"
                    self._current = job
                try:
                    self._run_job(job, out)
                finally:
                    with self._cond:
                        self._current = None
        finally:
            out.close(0)

    def _emit(self, out: zmq.Socket, job: Job, header: bytes, frames: tuple = ()) -> None:
        out.send_multipart([job.id.encode(), job.identity, header, *frames], copy=False)

    def _run_job(self, job: Job, out: zmq.Socket) -> None:
        started = time.monotonic()

        def progress(fraction: float, stage: str) -> None:
            if job.cancel.is_set():
                raise Cancelled(job.cancel_reason)
            self._emit(out, job, protocol.reply(job.request_id, T_PROGRESS, job=job.id,
                                                fraction=float(fraction), stage=stage))

        extra: dict[str, Any] = {}
        try:
            progress(0.0, "start")   # also tells the I/O thread early if the client is gone
            if job.kind == "detect":
                frames, extra = self._detect(job, progress)
                low_memory = bool(extra.pop("low_memory"))
            else:
                result, low_memory, extra = self._restore(job, progress)
                frames = (protocol.pixel_frame(result),)     # the request's dtype
                extra["dtype"] = protocol.dtype_name(result)
        except Cancelled as e:
            job.state = "cancelled"
            self._count("dropped" if job.cancel_reason.startswith("client") else "cancelled")
            log.info("job %s cancelled after %.2f s: %s", job.id, time.monotonic() - started, job.cancel_reason)
            self._emit(out, job, protocol.error_reply(job.request_id, E_CANCELLED, str(e) or job.cancel_reason,
                                                      job=job.id))
            return
        except InputError as e:     # the protocol checks make this unreachable; kept as a guard
            job.state = "failed"
            self._count("failed")
            self._emit(out, job, protocol.error_reply(job.request_id, E_UNSUPPORTED, str(e), job=job.id))
            return
        except Exception as e:
            job.state = "failed"
            self._count("failed")
            log.exception("job %s failed", job.id)
            if is_oom(e):
                advice = ("scan a smaller region for scratches" if job.kind == "detect"
                          else "restore a smaller region or use a smaller selection")
                code, msg = E_OOM, f"out of memory even on the low-memory path: {advice} ({str(e)[:200]})"
            else:
                code, msg = E_INTERNAL, f"{type(e).__name__}: {str(e)[:500]}"
            self._emit(out, job, protocol.error_reply(job.request_id, code, msg, job=job.id))
            return
        job.state = "done"
        self._count("completed")
        h, w = job.image.shape[:2]
        source = {"request": " + mask", "detected": " + detected mask"}.get(extra.get("mask_source", ""), "")
        log.info("job %s: %dx%dx%d%s %s in %.2f s%s", job.id, w, h, job.image.shape[2], source,
                 "scanned for scratches" if job.kind == "detect" else "restored", time.monotonic() - started,
                 " (low-memory path)" if low_memory else "")
        meta = dict(self.meta_base, job=job.id, width=w, height=h, channels=job.image.shape[2],
                    seconds=round(time.monotonic() - started, 4),
                    queued_seconds=round(started - job.submitted, 4),
                    low_memory=low_memory, **extra)
        if job.kind != "detect":
            meta["options"] = job.options
        self._emit(out, job, protocol.reply(job.request_id, T_OK, **meta), frames)

    def _restore(self, job: Job, progress: Progress) -> tuple[np.ndarray, bool, dict[str, Any]]:
        """(result, low-memory path?, reply fields: mask_source and, when detected, flagged)."""
        image = np.array(job.image)          # writable, owned copy (the frame is read-only)
        if job.mask is None and job.detect and self.detector is not None:
            out, info = restore_detected(self.restorer, self.detector, image, RestoreOptions(**job.options),
                                         progress)
            return (np.ascontiguousarray(out), info["low_memory"],
                    {"mask_source": "detected", "flagged": round(info["flagged"], 6)})
        mask = None if job.mask is None else np.array(job.mask)
        out, low_memory = restore_image(self.restorer, image, mask, job.options, progress)
        return out, low_memory, {"mask_source": "none" if mask is None else "request"}

    def _detect(self, job: Job, progress: Progress) -> tuple[tuple, dict[str, Any]]:
        """A detect job: (frames: mask [, probability], reply fields)."""
        assert self.detector is not None     # the I/O thread refuses detect without a detector
        threshold = model_threshold(self.detector) if job.threshold is None else job.threshold
        prob, mask, low_memory = detect_image(self.detector, job.image, threshold,
                                              lambda f: progress(f, "detect"))
        frames: tuple = (mask,)
        if job.probability:
            frames += (np.rint(prob * 255.0).astype(np.uint8),)
        progress(1.0, "done")
        return frames, {"threshold": threshold, "flagged": round(float(np.count_nonzero(mask)) / mask.size, 6),
                        "probability": job.probability, "low_memory": low_memory,
                        "detector": getattr(getattr(self.detector, "weights_info", None), "short_id", "")}


def detect_image(detector: ScratchDetector, image: np.ndarray, threshold: Optional[float] = None,
                 progress: Optional[Any] = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """What a detect job computes, shared by the worker and ``detect --in-process``:
    (probability float32 HxW, mask uint8 HxW with 255 = scratch, whether the low-memory
    retry ran). After an out-of-memory error the detection is run once more in small tiles
    (the same result: the tiles are exact)."""
    try:
        prob, mask = detect(image, detector, threshold, DEFAULT_TILE, progress)
        return prob, mask, False
    except Exception as e:
        if not is_oom(e):
            raise
    import torch
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    prob, mask = detect(image, detector, threshold, LOW_MEMORY_TILE, progress)
    return prob, mask, True


def restore_image(restorer: Restorer, image: np.ndarray, mask: Optional[np.ndarray],
                  options: dict[str, Any], progress: Optional[Progress] = None) -> tuple[np.ndarray, bool]:
    """What a restore job computes, shared by the worker and ``restore --in-process``:
    the model package's whole restore contract with the request's options. Returns
    (result, whether the low-memory path ran)."""
    out, info = restorer.restore_with_info(image, mask, RestoreOptions(**options), progress)
    return np.ascontiguousarray(out), info["low_memory"]
