"""What an ingest worker does to keep its memory and its collector pauses near what its data
needs (issue 19; docs/benchmarks.md, "Sixth round").

At 100,000 tags a worker holds a roster and an engine state of a few hundred thousand
long-lived objects, and every 30 s writes a 50 MB snapshot in parts. Left to the defaults:
- glibc keeps what Python frees in its heap (the roster as read, a snapshot's parts, a
  restore's re-judging), so the process stays at its high-water mark: free chunks inside
  the heap are only given back by `malloc_trim`;
- glibc raises its mmap threshold each time a large block is freed, up to 32 MB, so
  after the first snapshot its 1 MB parts are carved from the heap, not mapped and
  unmapped;
- every full collection walks every long-lived object: a pause of the event loop of
  150-340 ms every few tens of thousands of fixes, on which batches wait.

`configure` pins the mmap threshold and the number of malloc arenas; `settle` freezes what
exists into the collector's permanent generation (collections walk only what came after)
and gives free heap back; `trim` only the latter. Elsewhere than glibc (musl, macOS) the
malloc calls do nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc

# mallopt parameters (malloc.h).
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Blocks from this size up are mapped on their own and unmapped when freed. glibc's own
# starting value, pinned: setting it stops glibc from raising it.
MMAP_THRESHOLD = 128 * 1024
# The loop's thread and the few helper threads (paho's network thread, to_thread) share
# two arenas instead of one per thread, each holding on to its own free memory.
ARENA_MAX = 2


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if libc is None or not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None
    return libc


_LIBC = _glibc()


def configure() -> None:
    """Once, at the start of a process that will hold a roster."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        _LIBC.mallopt(_M_ARENA_MAX, ARENA_MAX)


async def trim() -> None:
    """Give the heap's free pages back to the system. In a thread: ctypes lets go of the
    interpreter meanwhile."""
    if _LIBC is not None:
        await asyncio.to_thread(_LIBC.malloc_trim, 0)


async def settle() -> None:
    """After loading or replacing what lives long (rules compiled, a shard restored): one
    full collection over everything, then freeze the survivors, so later collections walk
    only the objects made since; then `trim`. The collection is a pause as long as one of
    the collector's own full collections, once per such event instead of every few
    seconds. Unfreezing first lets the collection find cycles among what was frozen before
    and is now garbage (a replaced roster)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    await trim()
