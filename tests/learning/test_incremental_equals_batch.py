"""Property: incremental state, split across partial aggregates in any order, equals the batch result."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from learning.miner import agent_config_pairs, mine, routing_pairs, sft_pairs
from learning.models import FeedbackEvent
from learning.state import ContributionLedger, LearningState, SftIndex
from learning.state.ledger import apply_feedback
from tests.factories import make_trace

QUERIES = ["hi", "solve 2+2 now", "def f(x):\n  return x", "Tell me a moderately long story about a dog " * 2]
RESULTS = ["a", "b"]
MODELS = ["m1", "m2", ""]
AGENTS = ["a1", "a2", ""]
SCORES = [None, 0.1, 0.5, 0.7, 0.71, 0.9, 1.0]

trace_st = st.builds(
    lambda i, q, r, m, a, fb, oc, t, tools: make_trace(
        f"t{i}", query=q, result=r, model=m, agent=a, feedback=fb, outcome=oc, started_at=float(t), tools=tools
    ),
    st.integers(0, 25),
    st.sampled_from(QUERIES),
    st.sampled_from(RESULTS),
    st.sampled_from(MODELS),
    st.sampled_from(AGENTS),
    st.sampled_from(SCORES),
    st.sampled_from(["success", "failure", None]),
    st.integers(0, 5),
    st.lists(st.sampled_from(["calc", "search", "think"]), max_size=3),
)
feedback_st = st.builds(
    lambda i, s, ts: FeedbackEvent(trace_id=f"t{i}", score=s, ts=float(ts), outcome="success"),
    st.integers(0, 25),
    st.sampled_from([0.1, 0.69, 0.7, 0.95]),
    st.integers(0, 50),
)


@settings(max_examples=150, deadline=None)
@given(
    traces=st.lists(trace_st, min_size=1, max_size=30, unique_by=lambda t: t.trace_id),
    feedbacks=st.lists(feedback_st, max_size=15),
    partitions=st.integers(1, 4),
    data=st.data(),
)
def test_incremental_equals_batch(traces, feedbacks, partitions, data):
    # The final truth: each trace with the latest (by ts, then score) feedback for it applied.
    final = {}
    truth_ledger = ContributionLedger()
    for t in traces:
        truth_ledger.add_trace(t)
    for fb in feedbacks:
        truth_ledger.add_feedback(fb)
    for tid, entry in truth_ledger.entries.items():
        eff = entry.effective(0.7)
        if eff is not None:
            final[tid] = eff
    expected_traces = []
    for t in traces:
        eff = final[t.trace_id]
        expected_traces.append(t.model_copy(update={"feedback": eff.feedback, "outcome": eff.outcome}))
    batch = mine(expected_traces)

    # The stream: traces (some re-delivered) and feedback events interleaved in a random order, each
    # trace_id owned by one partition, every partition aggregating on its own, merged at the end.
    events = [("t", t) for t in traces] + [("t", t) for t in data.draw(st.lists(st.sampled_from(traces)))]
    events += [("f", fb) for fb in feedbacks]
    order = data.draw(st.permutations(events))
    ledgers = [ContributionLedger() for _ in range(partitions)]
    partials = [LearningState() for _ in range(partitions)]
    sfts = [SftIndex() for _ in range(partitions)]
    texts = {t.trace_id: (t.query, t.result) for t in traces}
    for kind, ev in order:
        p = int(ev.trace_id[1:]) % partitions
        if kind == "t":
            old, new = ledgers[p].add_trace(ev)
        else:
            old, new = ledgers[p].add_feedback(ev)
        partials[p].replace(old, new)
        q, r = texts.get(ev.trace_id, ("", ""))
        sfts[p].replace(old, new, query=q, result=r)
    merged, merged_sft = LearningState(), SftIndex()
    for part, sft in zip(partials, sfts, strict=True):
        merged.merge(part)
        merged_sft.merge(sft)

    assert merged.to_json() == batch.state.to_json()
    assert merged_sft.to_json() == batch.sft.to_json()
    assert routing_pairs(merged) == routing_pairs(batch.state)
    assert agent_config_pairs(merged) == agent_config_pairs(batch.state)
    assert sft_pairs(merged_sft) == sft_pairs(batch.sft)


def test_apply_feedback_ignores_older_event():
    entry, _, _ = apply_feedback(None, FeedbackEvent(trace_id="x", score=0.9, ts=10))
    same, old, new = apply_feedback(entry, FeedbackEvent(trace_id="x", score=0.1, ts=9))
    assert same == entry and old == new
