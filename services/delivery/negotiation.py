"""Which format a negotiated URL serves: the browser's Accept header against what exists."""

from __future__ import annotations

from collections.abc import Collection

__all__ = ["PREFERENCE", "choose_format", "parse_accept"]

# Ties go to the smallest files; when nothing is acceptable, the most compatible.
PREFERENCE = ("avif", "webp", "jpeg")
COMPATIBILITY = ("jpeg", "webp", "avif")
_MIME = {"avif": "image/avif", "webp": "image/webp", "jpeg": "image/jpeg"}


def parse_accept(header: str | None) -> dict[str, float]:
    """Media range -> q. A missing or empty header accepts anything; a range whose q is
    malformed is left out (RFC 9110: a recipient may ignore it)."""
    if header is None or not header.strip():
        return {"*/*": 1.0}
    ranges: dict[str, float] = {}
    for item in header.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        if 0.0 <= q <= 1.0:
            media = media.lower()
            # A range listed twice counts with its best q.
            ranges[media] = max(q, ranges.get(media, 0.0))
    return ranges


def _quality(ranges: dict[str, float], mime: str) -> float:
    """q of the most specific range matching `mime` (0 when none does)."""
    kind = mime.split("/", 1)[0]
    for candidate in (mime, f"{kind}/*", "*/*"):
        if candidate in ranges:
            return ranges[candidate]
    return 0.0


def choose_format(accept: str | None, available: Collection[str]) -> str:
    """The format to serve among `available` (not empty): highest q, ties by
    PREFERENCE; when none is acceptable, JPEG if there is one."""
    ranges = parse_accept(accept)
    scored = [
        (_quality(ranges, _MIME[fmt]), -PREFERENCE.index(fmt), fmt)
        for fmt in PREFERENCE
        if fmt in available
    ]
    if not scored:
        return next(iter(available))
    best_q, _, best = max(scored)
    if best_q > 0:
        return best
    return next(fmt for fmt in (*COMPATIBILITY, *available) if fmt in available)
