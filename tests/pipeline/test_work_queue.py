"""The bounded queue between stages: backpressure, hold (pause), close/drain semantics."""
from __future__ import annotations

import threading
import time

from vessel_seg.pipeline.engine.workqueue import WorkQueue


def test_put_blocks_while_full_and_never_drops():
    q = WorkQueue(2)
    assert q.put(1) and q.put(2)
    done = threading.Event()

    def producer():
        q.put(3)
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not done.wait(0.2)           # blocked: backpressure
    assert q.get() == 1
    assert done.wait(2.0)
    assert [q.get(), q.get()] == [2, 3]
    t.join()


def test_hold_pauses_getters_until_released():
    q = WorkQueue(4)
    q.put("a")
    q.hold(True)
    assert q.get(timeout=0.1) is None and q.get_nowait() is None
    q.hold(False)
    assert q.get(timeout=1.0) == "a"


def test_close_lets_getters_finish_the_remaining_items():
    q = WorkQueue(4)
    q.put(1)
    q.put(2)
    q.close()
    assert not q.put(3)
    assert [q.get(), q.get(), q.get()] == [1, 2, None]


def test_close_with_discard_leaves_items_for_drain_and_wakes_blocked_callers():
    q = WorkQueue(1)
    q.put("kept")
    results = []
    t = threading.Thread(target=lambda: results.append(q.put("blocked")))
    t.start()
    time.sleep(0.05)
    q.close(discard=True)
    t.join(2.0)
    assert results == [False]
    assert q.get() is None
    assert q.drain() == ["kept"]
