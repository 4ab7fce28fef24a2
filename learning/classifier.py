"""The one query classifier of tracelearn (versioned).

The reference has five classifiers that disagree. tracelearn keeps the reference's classes and their order
of precedence (code, math, short, long, general) but detects code and math from syntax rather than from
bare words, so prose such as "first class service", "let me know" or "import duties" is not code.
``CLASSIFIER_VERSION`` travels with every routing table: a router must not mix tables built by different
classifier versions. docs/reference-differences.md lists every behaviour that differs from the reference
and why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from learning.types import RoutingContext

CLASSIFIER_VERSION = "tl-1"

QUERY_CLASSES: tuple[str, ...] = ("code", "math", "short", "long", "general")

SHORT_BELOW = 50
LONG_ABOVE = 500

# Each code pattern has guards: punctuation the match needs (any one of them; a one-character search is
# a memchr) and words it contains (any one, searched in the lower-cased query). The regex runs only when
# both guards pass, which is rare (the classifier is on the stream's hot path). Plain ``in`` tests, because
# a regex alternation of the guard words scans a 500-character query about ten times slower.
_CODE_RULES: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = tuple(
    (chars, words, re.compile(pattern, re.IGNORECASE | re.MULTILINE))
    for chars, words, pattern in (
        ("`", ("`",), r"```|`[^`\n]+`"),  # fenced block or inline code span
        ("(", ("def",), r"\bdef\s+[A-Za-z_]\w*\s*\("),  # python function definition
        ("", ("class",), r"\bclass\s+[A-Za-z_]\w*\s*(?:\(|:|\{|extends\b|implements\b)"),  # class definition
        ("", ("import",), r"^\s*(?:from\s+[\w.]+\s+)?import\s+[\w.]+(?:\s+as\s+\w+)?\s*;?\s*$"),  # import line
        ("{", ("function",), r"\bfunction\s*[A-Za-z_$]?[\w$]*\s*\([^)]*\)\s*\{"),  # js function
        ("=", ("const", "let", "var"), r"\b(?:const|let|var)\s+[A-Za-z_$][\w$]*\s*="),  # js declaration
        ("#", ("#include",), r"#include\s*[<\"]"),
        (".", ("system.out.",), r"\bSystem\.out\."),
        ("(", ("console.log",), r"\bconsole\.log\s*\("),
        ("(:", ("for",), r"\bfor\s+\w+\s+in\s+[\w.]+\s*(?:\(|:)"),  # python for loop header
        ("{", ("if",), r"\bif\s*\([^\n]*\)\s*\{"),  # c-like if block
        ("=", ("=>",), r"\w+\s*\([^()]*\)\s*=>"),  # arrow function
    )
)

_MATH_GUARDS = ("solve", "integral", "equation", "calculate", "compute", "derivative")
_MATH_WORDS = re.compile(r"\b(?:solve|integral|equation|calculate|compute|derivative)\b", re.IGNORECASE)
_ARITHMETIC = re.compile(r"\d\s*[-+*/^×÷]\s*\(?\s*\d")
_DIGIT = re.compile(r"\d")
_ASCII_DIGITS = "0123456789"

_REASONING = re.compile(r"\b(?:explain|analy[sz]e|compare|why|reason|think)\b|\bstep[\s-]by[\s-]step\b", re.IGNORECASE)


# (guard word, pattern) pairs
_WordRules = tuple[tuple[str, re.Pattern[str]], ...]


def _rules_by_guard() -> tuple[_WordRules, tuple[tuple[str, _WordRules], ...]]:
    """The code rules regrouped for the search: (word, pattern) pairs that need no punctuation, and per
    guard character the pairs that need it (a rule of several words or characters appears once per each)."""
    unguarded: list[tuple[str, re.Pattern[str]]] = []
    by_char: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
    for chars, words, pattern in _CODE_RULES:
        pairs = [(word, pattern) for word in words]
        if not chars:
            unguarded += pairs
        for char in chars:
            by_char.setdefault(char, []).extend(pairs)
    return tuple(unguarded), tuple((char, tuple(pairs)) for char, pairs in by_char.items())


_UNGUARDED_RULES, _RULES_BY_CHAR = _rules_by_guard()


def _has_code(query: str, lowered: str) -> bool:
    # Grouped by guard character, a query checks each of the seven characters once and skips the rules
    # behind the absent ones; looping over the twelve rules themselves cost three times as much on a short
    # query (the classifier runs once per trace on the stream's hot path).
    for word, pattern in _UNGUARDED_RULES:
        if word in lowered and pattern.search(query) is not None:
            return True
    for char, rules in _RULES_BY_CHAR:
        if char in query:
            for word, pattern in rules:
                if word in lowered and pattern.search(query) is not None:
                    return True
    return False


def _contains_any(text: str, needles: Iterable[str]) -> bool:
    # a plain loop: any() over a generator costs about twice as much on these short loops
    for needle in needles:  # noqa: SIM110
        if needle in text:
            return True
    return False


def _has_math(query: str, lowered: str) -> bool:
    if _contains_any(lowered, _MATH_GUARDS) and _MATH_WORDS.search(query) is not None:
        return True
    return _has_digit(query) and _ARITHMETIC.search(query) is not None


def _has_digit(query: str) -> bool:
    # ten substring scans beat one regex scan for \d (Unicode digit classes per character); a non-ASCII
    # query may hold digits of other scripts, which only the regex sees
    if not query.isascii():
        return _DIGIT.search(query) is not None
    return _contains_any(query, _ASCII_DIGITS)


def has_code(query: str) -> bool:
    """True if the query contains code syntax (not merely a programming word)."""
    return _has_code(query, query.lower())


def has_math(query: str) -> bool:
    """True if the query asks to solve or calculate something, or contains arithmetic."""
    return _has_math(query, query.lower())


def has_reasoning(query: str) -> bool:
    """True if the query asks for explanation or step-by-step reasoning."""
    return _REASONING.search(query) is not None


def classify_query(query: str) -> str:
    """Classify a query into one of :data:`QUERY_CLASSES`; the first matching rule wins."""
    lowered = query.lower()
    if _has_code(query, lowered):
        return "code"
    if _has_math(query, lowered):
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
