import pytest

from learning.errors import ConfigError
from learning.models import FeedbackEvent
from learning.state import ContributionLedger, LearningState, SftIndex, TriggerCounter
from learning.state.contribution import contribution_of, pair_id_of
from learning.state.ledger import LedgerEntry
from learning.state.stats import DecayedMoments, Moments
from tests.factories import make_trace


def test_moments_exact_under_add_and_retract():
    m = Moments()
    for x in (0.1, 0.2, 0.7):
        m.add(x)
    m.add(0.2, -1)
    assert m.n == 2 and m.mean == pytest.approx(0.4)
    m.add(0.1, -1)
    m.add(0.7, -1)
    assert m.empty


def test_decayed_mean_weights_recent_more():
    d = DecayedMoments()
    d.add(0.0, t=0.0, half_life=10.0)
    d.add(1.0, t=10.0, half_life=10.0)
    assert d.mean == pytest.approx(2 / 3)
    assert d.weight_at(10.0, 10.0) == pytest.approx(1.5)
    assert d.weight_at(20.0, 10.0) == pytest.approx(0.75)
    # far-future samples re-anchor instead of overflowing
    d.add(1.0, t=10.0 * 10_000, half_life=10.0)
    assert d.mean == pytest.approx(1.0)


def test_decayed_merge_matches_single_accumulator():
    a, b, whole = DecayedMoments(), DecayedMoments(), DecayedMoments()
    for i, x in enumerate([0.2, 0.9, 0.4, 0.8]):
        (a if i % 2 else b).add(x, t=float(i * 7), half_life=5.0)
        whole.add(x, t=float(i * 7), half_life=5.0)
    a.merge(b, 5.0)
    assert a.mean == pytest.approx(whole.mean)
    assert a.weight_at(100.0, 5.0) == pytest.approx(whole.weight_at(100.0, 5.0))


def test_retraction_restores_empty_state_and_json_round_trip():
    state = LearningState(half_life=60.0)
    cs = [contribution_of(make_trace(f"t{i}", model=f"m{i % 2}", tools=["x", "y"])) for i in range(5)]
    for c in cs:
        state.add(c)
    again = LearningState.from_json(state.to_json())
    assert again.to_json() == state.to_json()
    for c in cs:
        state.retract(c)
    assert state.empty


def test_ledger_late_feedback_retracts_and_reapplies():
    ledger = ContributionLedger()
    old, new = ledger.add_trace(make_trace("t1", feedback=None))
    assert old is None and new is not None and not new.qualifies
    old, new = ledger.add_feedback(FeedbackEvent(trace_id="t1", score=0.9, ts=10))
    assert new.qualifies and new.feedback == 0.9
    # an older feedback event arriving late does not overwrite a newer one
    old, new = ledger.add_feedback(FeedbackEvent(trace_id="t1", score=0.1, ts=5))
    assert old == new and new.feedback == 0.9
    old, new = ledger.add_feedback(FeedbackEvent(trace_id="t1", score=0.2, ts=20))
    assert old.qualifies and not new.qualifies
    # feedback before its trace waits for it
    old, new = ledger.add_feedback(FeedbackEvent(trace_id="t2", score=0.95, ts=1))
    assert old is None and new is None
    old, new = ledger.add_trace(make_trace("t2", feedback=None))
    assert new.feedback == 0.95 and new.qualifies
    entry = ledger.entries["t2"]
    assert LedgerEntry.from_json(entry.to_json()) == entry


def test_late_feedback_that_qualifies_a_trace_gives_it_its_pair_id():
    # the pair id is worked out only for qualifying contributions; feedback can qualify a trace later
    ledger, idx = ContributionLedger(), SftIndex()
    trace = make_trace("t1", feedback=0.2, query="Name three moons of Jupiter.", result="Io, Europa, Ganymede.")
    old, new = ledger.add_trace(trace)
    assert new is not None and not new.qualifies and new.pair_id == ""
    assert idx.replace(old, new, query=trace.query, result=trace.result) == []
    old, new = ledger.add_feedback(FeedbackEvent(trace_id="t1", score=0.9, ts=5.0))
    assert new is not None and new.qualifies
    assert new.pair_id == pair_id_of(trace.query, trace.result)
    changes = idx.replace(old, new, query=trace.query, result=trace.result)
    assert [c.pair_id for c in changes] == [new.pair_id] and set(idx.pairs) == {new.pair_id}
    # and feedback that disqualifies it again removes exactly that pair
    old, new = ledger.add_feedback(FeedbackEvent(trace_id="t1", score=0.1, ts=6.0))
    assert idx.replace(old, new, query=trace.query, result=trace.result)[0].after is None and not idx.pairs


def test_sft_index_falls_back_to_next_most_recent():
    idx = SftIndex()
    a = contribution_of(make_trace("a", started_at=1, model="old"))
    b = contribution_of(make_trace("b", started_at=2, model="new"))
    kw = {"query": "What is the capital of France, and why is it there?", "result": "Paris."}
    idx.replace(None, a, **kw)
    changes = idx.replace(None, b, **kw)
    assert changes[0].before.trace_id == "a" and changes[0].after.trace_id == "b"
    changes = idx.replace(b, None, **kw)
    assert changes[0].after.model == "old"
    changes = idx.replace(a, None, **kw)
    assert changes[0].after is None and not idx.pairs
    assert a.pair_id == pair_id_of(kw["query"], kw["result"])


def test_trigger_counter_one_per_crossing():
    idx, trig = SftIndex(), TriggerCounter(threshold=3, per_agent=True)
    due = []
    for i in range(7):
        c = contribution_of(make_trace(f"t{i}", query=f"question number {i} " * 3, agent="bot"))
        due += trig.observe(idx.replace(None, c, query=f"question number {i} " * 3, result="r"))
    ids = [d.cycle_id for d in due]
    assert ids == ["agent:bot#1", "global#1", "agent:bot#2", "global#2"]
    assert [d.pair_count for d in due] == [3, 3, 6, 6]
    with pytest.raises(ConfigError):
        TriggerCounter(threshold=0)
