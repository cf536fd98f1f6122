"""Micro-batching: requests that arrive together are answered by one call of the batch function.

One worker thread owns the model. Each time it is free it takes every waiting request (up to
`max_batch`) and runs them as one batch, so an idle server adds no wait to a lone request, and under
load the requests queued during one batch share the next generator call and FAISS search.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Sequence

_STOP = object()


class QueryBatcher:
    """Runs `work(items) -> results` (same length and order) on one thread over batches of submitted items."""

    def __init__(self, work: Callable[[Sequence[Any]], Sequence[Any]], max_batch: int = 32):
        assert max_batch >= 1, max_batch
        self.work = work
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="query-batcher", daemon=True)
        self._thread.start()
        self.batches = 0  # how many work calls ran: with `served`, the mean batch size
        self.served = 0

    def submit(self, item: Any) -> Future:
        """Queue one item; the future holds its result, or the exception its batch raised."""
        future: Future = Future()
        self._queue.put((item, future, time.perf_counter()))
        return future

    def close(self) -> None:
        """Stop the worker after the requests already queued."""
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
                if entry is _STOP:
                    stop = True
                    break
                batch.append(entry)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list) -> None:
        started = time.perf_counter()
        items = [item for item, _, _ in batch]
        try:
            results = self.work(items)
            assert len(results) == len(items), (len(results), len(items))
        except BaseException as exc:  # the batch's callers get the error; the worker lives on
            for _, future, _ in batch:
                future.set_exception(exc)
            return
        self.batches += 1
        self.served += len(batch)
        for (_, future, queued), result in zip(batch, results):
            future.set_result((result, 1000 * (started - queued), len(batch)))
