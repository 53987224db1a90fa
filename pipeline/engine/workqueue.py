"""A bounded, closeable, holdable FIFO queue: the backpressure element between pipeline stages.

* ``put`` blocks while the queue is full (backpressure: nothing is ever dropped) and returns False only
  when the queue has been closed.
* ``get`` blocks while the queue is empty or *held* (paused); after ``close()`` it returns the remaining
  items and then ``None`` (or ``None`` at once with ``close(discard=True)``, leaving the items for
  ``drain()``).
All waits are on a condition variable: an idle pipeline uses no CPU.
"""
from __future__ import annotations

import collections
import threading
from typing import Any, Deque, List, Optional


class WorkQueue(object):
    """Bounded FIFO with close/hold semantics (see module docstring)."""

    def __init__(self, maxsize: int, name: str = "queue") -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.name = name
        self._items: Deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._discard = False
        self._held = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: Any, timeout: Optional[float] = None) -> bool:
        """Append, blocking while full. False if closed (or ``timeout`` expired): the item was not queued."""
        with self._cond:
            ok = self._cond.wait_for(lambda: self._closed or len(self._items) < self.maxsize, timeout)
            if self._closed or not ok:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout: Optional[float] = None) -> Optional[Any]:
        """Next item, blocking while empty or held; None once closed (and emptied) or on timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or (self._items and not self._held), timeout)
            if self._closed and (self._discard or not self._items):
                return None
            if not self._items or self._held and not self._closed:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def get_nowait(self) -> Optional[Any]:
        """Next item if one is available right now (ignores hold only when closed), else None."""
        with self._cond:
            if not self._items or (self._closed and self._discard) or (self._held and not self._closed):
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def hold(self, held: bool) -> None:
        """While held, ``get`` waits even if items are available (used for pause)."""
        with self._cond:
            self._held = held
            self._cond.notify_all()

    def close(self, discard: bool = False) -> None:
        """No more puts; getters drain what is left (or get None at once with ``discard``)."""
        with self._cond:
            self._closed = True
            self._discard = self._discard or discard
            self._cond.notify_all()

    def drain(self) -> List[Any]:
        """Remove and return every queued item."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return items
