"""Python's cyclic garbage collector, set for long-running processes."""

from __future__ import annotations

import gc


def freeze_start_up() -> None:
    """Moves every object alive once a process has started (its modules, classes, protobuf
    descriptors, SQLAlchemy's tables and the app's parts: some 100,000 objects) out of the
    collector's reach. A full collection walks every tracked object, and a crowd ingest process
    ran one every half minute or so, stopping its loop for 20 ms on a quiet machine and 130-400 ms
    on a busy one, every reading in flight waiting with it: the tail of reading -> level_changed
    (issue 13). Frozen, they are never walked again, so a full collection walks only what the
    process made since; what start-up made and later drops stays in memory rather than
    collected, a few objects at most. Garbage of start-up is collected first, not frozen."""
    gc.collect()
    gc.freeze()
