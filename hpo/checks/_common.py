"""What the checks share: how a value is shown, and how far a cross-check enumerates."""

from __future__ import annotations


def _short(value: object, limit: int = 60) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


MAX_COMBINATIONS = 256
"""The most combinations of the other searched values a cross-field check tries."""
