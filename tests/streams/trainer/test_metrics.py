"""The trainer's metrics follow Prometheus' conventions: counters for amounts, an _info gauge for a version."""

from __future__ import annotations

from prometheus_client import generate_latest

from streams.trainer.service import TrainerMetrics


def test_the_adapter_version_is_a_label_of_one_series_at_a_time():
    metrics = TrainerMetrics()
    metrics.set_current(1)
    metrics.set_current(2)
    metrics.set_current(2)
    page = generate_latest(metrics.registry).decode()
    assert 'tracelearn_trainer_adapter_info{version="2"} 1.0' in page
    assert 'version="1"' not in page


def test_trained_tokens_are_a_counter():
    metrics = TrainerMetrics()
    metrics.tokens.inc(1200)
    metrics.tokens.inc(800)
    page = generate_latest(metrics.registry).decode()
    assert "# TYPE tracelearn_trainer_tokens_total counter" in page
    assert "tracelearn_trainer_tokens_total 2000.0" in page
