"""Sessions: runs of frames without a long break in DATE-OBS (one night, one pointing run).

Both the astrometry stage (one anchor per session) and the SDS planner (batches never straddle
a break) cut the frames this way.
"""

from __future__ import annotations

from supadupstack.frames.model import Frame


def time_key(frame: Frame) -> tuple[float, str]:
    """Sort key: exposure start (frames without DATE-OBS last), then path."""
    return (frame.mjd_obs if frame.mjd_obs is not None else float("inf"), str(frame.path))


def split_sessions(ordered: list[Frame], gap_min: float) -> list[list[int]]:
    """Indices of time-ordered frames grouped into sessions separated by gaps > gap_min
    (minutes; 0 = one session)."""
    sessions: list[list[int]] = []
    last = None
    for i, f in enumerate(ordered):
        t = f.mjd_obs
        gap = (t - last) * 1440.0 if (t is not None and last is not None) else 0.0
        if not sessions or (gap_min > 0 and gap > gap_min):
            sessions.append([])
        sessions[-1].append(i)
        last = t if t is not None else last
    return sessions
