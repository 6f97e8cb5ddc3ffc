"""Update masks: which fields of a message an Update call changes.

An empty mask is refused rather than read as "all": a client that sends only the
fields it knows would reset the ones added after it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from services.shared.errors import InvalidArgument

__all__ = ["masked_fields"]


def masked_fields(
    paths: Sequence[str], known: Collection[str], *, what: str, unknown_reason: str
) -> list[str]:
    """The fields `paths` names, each once, in order; all must be among `known` (the
    `what` of the message, e.g. "settings")."""
    listed = ", ".join(known)
    if not paths:
        raise InvalidArgument(
            f"update_mask must name the {what} to change (known: {listed})",
            reason="UPDATE_MASK_REQUIRED",
            metadata={"known": listed},
        )
    unknown = sorted(set(paths) - set(known))
    if unknown:
        raise InvalidArgument(
            f"update_mask names {', '.join(repr(p[:64]) for p in unknown[:5])}, which are not "
            f"{what}; the {what} are: {listed}",
            reason=unknown_reason,
            metadata={"known": listed},
        )
    return list(dict.fromkeys(paths))
