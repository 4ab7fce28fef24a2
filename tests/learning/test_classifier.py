import pytest

from learning import build_routing_context, classify_query
from learning.classifier import CLASSIFIER_VERSION, QUERY_CLASSES


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
