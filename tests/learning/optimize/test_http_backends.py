"""The HTTP backends against a real local server: answers, retries, timeouts, errors, and a full run."""

from __future__ import annotations

import json

import pytest

from learning.optimize import (
    AnthropicBackend,
    BackendError,
    LLMOptimizer,
    OpenAICompatibleBackend,
    OptimizationEngine,
    ReplayTrialRunner,
)
from learning.optimize.replay_runner import LEARNING_SEARCH_SPACE, REPLAY_OBJECTIVES
from tests.recorded_traces import recorded_traces
from tests.scripted_llm import Reply, config_answer, feedback_answer, scripted_llm


def queue(*replies: Reply):
    pending = list(replies)
    return lambda request: pending.pop(0)


def ask(backend) -> str:
    return backend.generate("hello", model="m", system="sys", temperature=0.1, max_tokens=32)


def test_openai_request_shape_and_answer():
    with scripted_llm(queue(Reply("hi there"))) as llm:
        backend = OpenAICompatibleBackend(llm.url, api_key="sk-secret", timeout=5)
        assert ask(backend) == "hi there"
    [req] = llm.requests
    assert req["_path"] == "/v1/chat/completions" and req["_auth"] == "Bearer sk-secret"
    assert req["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hello"}]
    assert (req["model"], req["temperature"], req["max_tokens"]) == ("m", 0.1, 32)
    assert "sk-secret" not in repr(backend) and "sk-secret" not in repr(backend.api_key)


def test_timeouts_and_server_errors_are_retried_with_backoff():
    replies = queue(Reply("late", delay=1.5), Reply(status=503), Reply(raw=b"<html>proxy</html>"), Reply("ok"))
    with scripted_llm(replies) as llm:
        backend = OpenAICompatibleBackend(llm.url, timeout=0.5, max_retries=3, backoff=0.01)
        assert ask(backend) == "ok"
    assert len(llm.requests) == 4


def test_retries_are_bounded_and_the_error_says_why():
    with scripted_llm(lambda request: Reply("late", delay=1.0)) as llm:
        backend = OpenAICompatibleBackend(llm.url, timeout=0.3, max_retries=1, backoff=0.01)
        with pytest.raises(BackendError, match=r"no answer after 2 attempts; last error: timed out after 0\.3 s"):
            ask(backend)
    assert len(llm.requests) == 2


def test_client_errors_are_not_retried():
    with (
        scripted_llm(lambda request: Reply(status=401, raw=b'{"error": "bad key"}')) as llm,
        pytest.raises(BackendError, match="HTTP 401"),
    ):
        ask(OpenAICompatibleBackend(llm.url, max_retries=3, backoff=0.01))
    assert len(llm.requests) == 1


def test_nothing_listening_is_a_backend_error():
    with pytest.raises(BackendError, match="no answer after 1 attempts"):
        ask(OpenAICompatibleBackend("http://127.0.0.1:9/v1", timeout=1, max_retries=0))


def test_anthropic_messages_format():
    body = {"content": [{"type": "text", "text": "part one, "}, {"type": "text", "text": "part two"}]}
    with scripted_llm(queue(Reply(raw=json.dumps(body).encode()))) as llm:
        backend = AnthropicBackend(llm.url.removesuffix("/v1"), api_key="ak", timeout=5)
        assert ask(backend) == "part one, part two"
    [req] = llm.requests
    assert req["_path"] == "/v1/messages" and req["system"] == "sys"
    assert req["messages"] == [{"role": "user", "content": "hello"}]


def test_a_run_over_http_survives_garbled_answers_timeouts_and_a_failing_trial(tmp_path):
    good = {"learning.routing_rule": "lcb", "learning.min_samples": 10, "learning.min_quality": 0.7}
    decayed = {**good, "learning.routing_rule": "decayed", "learning.half_life_seconds": 0}
    script = [
        Reply(config_answer({**good, "learning.routing_rule": "mean", "learning.min_samples": 1})),  # trial 1
        Reply(feedback_answer("learning")),
        Reply("I would rather chat about the weather."),  # trial 2: garbled, retried
        Reply(config_answer({**decayed, "learning.half_life_seconds": 600}), delay=2.0),  # timed out, retried
        Reply(config_answer(decayed)),  # no half-life: the trial fails
        Reply(config_answer(good)),  # trial 3 (targeted): the better rule
        Reply("not json at all"),  # its analysis stays prose
        Reply("still prose"),
        Reply("prose forever"),
    ]
    with scripted_llm(queue(*script)) as llm:
        backend = OpenAICompatibleBackend(llm.url, timeout=1.0, max_retries=2, backoff=0.01)
        optimizer = LLMOptimizer(LEARNING_SEARCH_SPACE, "scripted", backend, objectives=list(REPLAY_OBJECTIVES))
        engine = OptimizationEngine(
            LEARNING_SEARCH_SPACE, optimizer, ReplayTrialRunner(recorded_traces()), max_trials=3
        )
        run = engine.run()
    assert [t.status for t in run.trials] == ["completed", "failed", "completed"]
    assert "needs a half-life" in run.trials[1].error
    assert run.trials[2].analysis == "prose forever"
    assert run.best_trial.trial_id == run.trials[2].trial_id  # the lower-regret parameters win
    assert run.trials[2].metrics["regret"] < run.trials[0].metrics["regret"]
    assert "## Problems With Your Previous Answer" in llm.prompts()[3]
