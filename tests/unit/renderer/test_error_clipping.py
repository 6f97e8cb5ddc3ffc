"""An attempt's error is clipped to the shared limit wherever the history keeps it."""

from __future__ import annotations

from imagepipe.v1 import events_pb2
from services.renderer.retries import with_attempt
from services.shared.limits import MAX_ERROR_CHARS, clip_error


def test_clip_error_keeps_short_text_and_cuts_long_text() -> None:
    assert clip_error("short") == "short"
    assert clip_error("x" * (MAX_ERROR_CHARS + 5)) == "x" * MAX_ERROR_CHARS


def test_a_long_error_is_clipped_in_a_new_entry_and_in_a_collapsed_one() -> None:
    long = "e" * (3 * MAX_ERROR_CHARS)
    request = with_attempt(events_pb2.RenderRequest(job_id="j"), 1, long, False)
    assert len(request.attempts[0].error) == MAX_ERROR_CHARS
    request = with_attempt(request, 2, "first outage", True)
    request = with_attempt(request, 3, long, True)  # collapsed into the outage entry
    assert [len(a.error) for a in request.attempts] == [MAX_ERROR_CHARS, MAX_ERROR_CHARS]
