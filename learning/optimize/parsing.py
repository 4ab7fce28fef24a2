"""Reading structured answers out of LLM text.

Fixes over the reference (9.4, 9.9): a fenced ```json block is read without its language tag; nothing is
guessed when no JSON object is found (the caller retries with the reason, then records a failure); the
judge score parser takes the *labelled* score ("Score: 0.8"), honours signs and scales, and says when
there is none instead of returning 0.5.
"""

from __future__ import annotations

import json
import re
from typing import Any

from learning.optimize.types import TrialFeedback

_FENCE = re.compile(r"```([A-Za-z0-9_-]*)[ \t]*\n?(.*?)```", re.DOTALL)


def extract_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text``: a ```json block, then any fenced block, then any ``{...}``."""
    blocks = _FENCE.findall(text)
    ordered = [body for tag, body in blocks if tag.lower() == "json"] + [body for tag, body in blocks]
    for body in ordered:
        try:
            value = json.loads(body)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _str_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)] if value else []


def parse_feedback(text: str) -> TrialFeedback | None:
    """Structured feedback from an analysis answer, or None when it holds no JSON object."""
    data = extract_json_object(text)
    if data is None:
        return None
    ratings = data.get("primitive_ratings", {})
    return TrialFeedback(
        summary_text=str(data.get("summary_text", "")),
        failure_patterns=_str_list(data.get("failure_patterns")),
        primitive_ratings={str(k): str(v) for k, v in ratings.items()} if isinstance(ratings, dict) else {},
        suggested_changes=_str_list(data.get("suggested_changes")),
        target_primitive=str(data.get("target_primitive", "") or ""),
    )


_NUMBER = r"([-+]?\d+(?:\.\d+)?)"
_LABELLED = re.compile(
    rf"\b(?:score|rating|quality)\b\s*(?:is|of|[:=])?\s*\**\s*{_NUMBER}\s*(?:(?:/|out of)\s*{_NUMBER})?",
    re.IGNORECASE,
)
_LEADING = re.compile(rf"^\s*\**\s*{_NUMBER}\s*(?:(?:/|out of)\s*{_NUMBER})?\s*\**\s*(?:$|[\s.,;:])")


def parse_judge_score(text: str) -> float | None:
    """A judge's score in [0, 1]: the labelled score, else a number opening the first line; None if neither.

    "x/y" and "x out of y" are ratios; a bare number above 1 is read on a 10-point (<= 10) or 100-point
    (<= 100) scale; negative scores clamp to 0.
    """
    match = _LABELLED.search(text)
    if match is None:
        first_line = text.strip().splitlines()[0] if text.strip() else ""
        match = _LEADING.match(first_line)
    if match is None:
        return None
    value = float(match.group(1))
    if match.group(2) is not None:
        denominator = float(match.group(2))
        if denominator <= 0:
            return None
        value = value / denominator
    elif value > 10:
        value = value / 100
    elif value > 1:
        value = value / 10
    return min(max(value, 0.0), 1.0)
