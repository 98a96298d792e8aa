"""fencewatch.memory: what a worker keeps after it settles its long-lived data."""

from __future__ import annotations

import gc
import weakref

from fencewatch import memory


class _Rules:
    """Stands for a compiled roster with a reference cycle in it."""

    def __init__(self) -> None:
        self.me = self


async def test_settle_freezes_what_lives_and_frees_what_was_replaced() -> None:
    try:
        old = _Rules()
        await memory.settle()
        assert gc.get_freeze_count() > 0  # later collections skip what settled
        gone = weakref.ref(old)
        del old  # a rule reload replaced it; its cycle was frozen
        await memory.settle()
        assert gone() is None  # not kept for ever by having been frozen
    finally:
        gc.unfreeze()


async def test_trim_and_configure_are_harmless_anywhere() -> None:
    memory.configure()
    await memory.trim()
    assert bytearray(1 << 20)  # large blocks are still handed out
