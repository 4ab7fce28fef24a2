"""Reading JSON and judge scores out of LLM answers."""

from __future__ import annotations

import pytest

from learning.optimize.parsing import extract_json_object, parse_feedback, parse_judge_score


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('```json\n{"params": {"a": 1}}\n```', {"params": {"a": 1}}),
        ('```JSON {"a": 2}```', {"a": 2}),
        ('thoughts\n```\n{"a": 3}\n```', {"a": 3}),
        ('I propose {"a": 4} because', {"a": 4}),
        ('```json\n{"broken": \n```\nbut then {"a": 5}', {"a": 5}),
        ('[1, 2] and {not json} then {"a": 6}', {"a": 6}),
        ("no json here", None),
        ("```json\n[1, 2]\n```", None),
    ],
)
def test_extract_json_object(text, expected):
    assert extract_json_object(text) == expected


def test_parse_feedback_coerces_and_defaults():
    fb = parse_feedback(
        '```json\n{"summary_text": "ok", "failure_patterns": "one", "primitive_ratings": {"agent": 1},'
        ' "target_primitive": null}\n```'
    )
    assert fb.summary_text == "ok" and fb.failure_patterns == ["one"] and fb.primitive_ratings == {"agent": "1"}
    assert fb.target_primitive == "" and fb.suggested_changes == []
    assert parse_feedback("just prose") is None


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("The 3 answers were checked. Score: 0.8", 0.8),  # the reference read 0.3
        ("Score: 85", 0.85),  # the reference read 1.0
        ("Rating = 7/10\nreasons", 0.7),
        ("quality: 4 out of 5", 0.8),
        ("-0.5\nvery wrong", 0.0),  # the reference dropped the sign and read 0.5
        ("0.9\nThe answer is right.", 0.9),
        ("**Score:** 1", 1.0),
        ("Score: 3/0", None),
        ("The answer mentions 3 steps.", None),
        ("", None),
    ],
)
def test_parse_judge_score(text, score):
    assert parse_judge_score(text) == (pytest.approx(score) if score is not None else None)
