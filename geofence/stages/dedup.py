"""A QoS 1 redelivery is judged once: the device's sequence numbers already seen."""

from __future__ import annotations

from geofence.context import StepContext
from geofence.judge import Judged
from geofence.model import Quality
from geofence.state import Track

WINDOW = 64  # recent sequence numbers remembered per device: one unsigned 64-bit word
_MASK = (1 << WINDOW) - 1


def is_newer(track: Track, seq: int, ts: int) -> bool:
    """After everything the track has judged: a later time, or the same millisecond with a
    higher number (a device may take several fixes within one)."""
    return ts > track.last_ts or (ts == track.last_ts and seq > track.max_seq)


def seen_before(track: Track, seq: int, ts: int) -> bool:
    """Record `seq`; True if it was already recorded. Always the live track's numbers, so a
    redelivered live fix is caught even when its time sends it to a late track."""
    if is_newer(track, seq, ts):
        # Newer than anything judged, so new. A lower number means the device restarted
        # its numbering (a reboot): start remembering afresh.
        if seq > track.max_seq:
            # Shifted only within the window: a jump of 2**40 would otherwise build a
            # 2**40-bit integer and exhaust memory (issue 13: a poison seq).
            gap = seq - track.max_seq
            track.seen = ((track.seen << gap) | 1) & _MASK if gap < WINDOW else 1
            track.max_seq = seq
        elif seq < track.max_seq:
            track.seen, track.max_seq = 1, seq
        return False
    offset = track.max_seq - seq
    if not 0 <= offset < WINDOW:
        return False  # beyond what we remember: the database's key is the last word
    bit = 1 << offset
    if track.seen & bit:
        return True
    track.seen |= bit
    return False


def run(ctx: StepContext, track: Track, j: Judged) -> bool:
    return not j.flags & Quality.DUPLICATE
