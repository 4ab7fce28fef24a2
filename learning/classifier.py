"""The one query classifier of tracelearn (versioned).

The reference has five classifiers that disagree (reference section 2). tracelearn keeps the reference's
classes and their order of precedence (code, math, short, long, general) but detects code and math from
syntax rather than from bare words, so prose such as "first class service", "let me know" or
"import duties" is not code. ``CLASSIFIER_VERSION`` travels with every routing table: a router must not
mix tables built by different classifier versions. docs/classifier.md lists every behaviour that differs
from the reference and why.
"""

from __future__ import annotations

import re

from learning.types import RoutingContext

CLASSIFIER_VERSION = "tl-1"

QUERY_CLASSES: tuple[str, ...] = ("code", "math", "short", "long", "general")

SHORT_BELOW = 50
LONG_ABOVE = 500

_CODE = re.compile(
    r"```"  # fenced block
    r"|`[^`\n]+`"  # inline code span
    r"|\bdef\s+[A-Za-z_]\w*\s*\("  # python function definition
    r"|\bclass\s+[A-Za-z_]\w*\s*(?:\(|:|\{|extends\b|implements\b)"  # class definition
    r"|^\s*(?:from\s+[\w.]+\s+)?import\s+[\w.]+(?:\s+as\s+\w+)?\s*;?\s*$"  # import statement on its own line
    r"|\bfunction\s*[A-Za-z_$]?[\w$]*\s*\([^)]*\)\s*\{"  # js function
    r"|\b(?:const|let|var)\s+[A-Za-z_$][\w$]*\s*="  # js declaration with assignment
    r"|#include\s*[<\"]"
    r"|\bSystem\.out\."
    r"|\bconsole\.log\s*\("
    r"|\bfor\s+\w+\s+in\s+[\w.]+\s*(?:\(|:)"  # python for loop header
    r"|\bif\s*\(.*\)\s*\{"  # c-like if block
    r"|\w+\s*\([^()]*\)\s*=>",  # arrow function
    re.IGNORECASE | re.MULTILINE,
)

_MATH_WORDS = re.compile(r"\b(?:solve|integral|equation|calculate|compute|derivative)\b", re.IGNORECASE)
_ARITHMETIC = re.compile(r"\d\s*[-+*/^×÷]\s*\(?\s*\d")

_REASONING = re.compile(r"\b(?:explain|analy[sz]e|compare|why|reason|think)\b|\bstep[\s-]by[\s-]step\b", re.IGNORECASE)


def has_code(query: str) -> bool:
    """True if the query contains code syntax (not merely a programming word)."""
    return _CODE.search(query) is not None


def has_math(query: str) -> bool:
    """True if the query asks to solve or calculate something, or contains arithmetic."""
    return _MATH_WORDS.search(query) is not None or _ARITHMETIC.search(query) is not None


def has_reasoning(query: str) -> bool:
    """True if the query asks for explanation or step-by-step reasoning."""
    return _REASONING.search(query) is not None


def classify_query(query: str) -> str:
    """Classify a query into one of :data:`QUERY_CLASSES`; the first matching rule wins."""
    if has_code(query):
        return "code"
    if has_math(query):
        return "math"
    if len(query) < SHORT_BELOW:
        return "short"
    if len(query) > LONG_ABOVE:
        return "long"
    return "general"


def build_routing_context(query: str, *, urgency: float = 0.5) -> RoutingContext:
    """Populate a RoutingContext from a raw query string."""
    return RoutingContext(
        query=query,
        query_length=len(query),
        has_code=has_code(query),
        has_math=has_math(query),
        urgency=urgency,
        metadata={"classifier_version": CLASSIFIER_VERSION, "has_reasoning": has_reasoning(query)},
    )
