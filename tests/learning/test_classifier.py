import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learning import build_routing_context, classify_query
from learning.classifier import (
    _ARITHMETIC,
    _CODE_RULES,
    _DIGIT,
    _DIGIT_RULES,
    _MATH_DIGIT_GUARDS,
    _MATH_GUARDS,
    _MATH_WORDS,
    _RULES_BY_CHAR,
    _RULES_BY_FIRST_WORD,
    _UNGUARDED_RULES,
    CLASSIFIER_VERSION,
    QUERY_CLASSES,
    _has_code,
    _has_math,
)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("calculate 1 + 2", "math"),
        ("Calculating stuff", "short"),
        ("import", "short"),
        ("x" * 50, "general"),
        ("x" * 500, "general"),
        ("x" * 501, "long"),
        ("```python\nprint(1)\n```", "code"),
        ("what does `len` do", "code"),
        ("def foo(x):\n    return x", "code"),
        ("class Foo(Base):\n    pass", "code"),
        ("import numpy as np", "code"),
        ("const x = 3; console.log(x)", "code"),
        ("solve the equation x^2 = 4 for me please, it is urgent", "math"),
        ("what is 12 * 7", "math"),
    ],
)
def test_reference_examples_and_code(query, expected):
    assert classify_query(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        "We booked a first class service on the train to Paris for the whole family, any tips?",
        "Please let me know what the weather will be like in Lisbon next weekend for a trip",
        "What import duties apply when I bring a bicycle from Japan into the European Union?",
        "Which function of the liver is most affected by long term alcohol consumption overall?",
    ],
)
def test_reference_false_positives_are_fixed(query):
    assert classify_query(query) == "general"


def test_classes_and_version():
    assert set(QUERY_CLASSES) == {"code", "math", "short", "long", "general"}
    assert CLASSIFIER_VERSION


def test_build_routing_context():
    ctx = build_routing_context("def f(x):\n  return x", urgency=0.9)
    assert ctx.has_code and not ctx.has_math
    assert ctx.query_length == len("def f(x):\n  return x")
    assert ctx.urgency == 0.9
    assert ctx.language == "en"
    assert ctx.metadata["classifier_version"] == CLASSIFIER_VERSION
    assert build_routing_context("let me know").has_code is False


# Text built from the pieces the patterns look for, so that matches and near-misses are both common.
_PIECES = [
    "def ",
    "class ",
    "import ",
    "from x ",
    "function",
    "const ",
    "let ",
    "var ",
    "#include <",
    "System.out.",
    "console.log(",
    "for ",
    " in ",
    "if (",
    ") {",
    "=>",
    "`",
    "```",
    "(",
    ")",
    ":",
    "=",
    "{",
    "\n",
    " ",
    "x",
    "solve",
    "Integral",
    "compute",
    "7",
    "+",
    "*",
    "٣",
    "ſ",
    "Σ",
    "é",
    "name",
    "_a",
    "$",
    # first words of a line, which the line-start rules are looked up by
    "select",
    " * from t",
    "try:",
    "git",
    " -x",
    "|",
    "sudo",
    "import",
    "\r",
    "\t",
    "%",
    "^2",
    "how many ways",
    "root",
]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=14).map("".join) | st.text(max_size=60))
def test_guards_never_change_the_answer(query):
    """The punctuation guards and the ASCII digit scan only skip searches that cannot succeed: the result
    equals running each pattern whose guard word is in the lower-cased query."""
    lowered = query.lower()
    expected_code = any(any(w in lowered for w in words) and p.search(query) for _, words, p in _CODE_RULES)
    assert _has_code(query, lowered) == expected_code
    expected_math = bool(
        (any(w in lowered for w in _MATH_GUARDS) and _MATH_WORDS.search(query))
        or (
            _DIGIT.search(query)
            and (
                _ARITHMETIC.search(query)
                or (any(w in lowered for w in _MATH_DIGIT_GUARDS) and _MATH_WORDS.search(query))
                or any(g in lowered and p.search(query) for g, p in _DIGIT_RULES)
            )
        )
    )
    assert _has_math(query, lowered) == expected_math


def test_every_code_rule_is_searched_behind_each_of_its_guards():
    """The regrouped rules hold each rule's (word, pattern) pairs under each of its guard characters (or
    unguarded when it has none), and nothing else: a rule left out of a group would never match queries
    whose only guard character is that one."""
    expected: dict[str, set[tuple[str, str]]] = {}
    for chars, words, pattern in _CODE_RULES:
        for key in [chars] if chars == "^" else chars or [""]:
            expected.setdefault(key, set()).update((word, pattern.pattern) for word in words)
    grouped = {char: {(word, p.pattern) for word, p in pairs} for char, pairs in _RULES_BY_CHAR}
    grouped[""] = {(word, p.pattern) for word, p in _UNGUARDED_RULES}
    grouped["^"] = {(word, p.pattern) for word, patterns in _RULES_BY_FIRST_WORD.items() for p in patterns}
    assert grouped == expected
    # a rule looked up by the first word of a line can only match there, after that word
    for chars, _, pattern in _CODE_RULES:
        if chars == "^":
            assert pattern.pattern.startswith(r"^\s*"), pattern.pattern
    assert len(_RULES_BY_CHAR) == len({char for char, _ in _RULES_BY_CHAR})  # one group per character
