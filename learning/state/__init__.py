"""Incremental, mergeable, retractable learning state (the part the stream workers run on)."""

from learning.state.contribution import Contribution, contribution_of, pair_id_of
from learning.state.ledger import ContributionLedger, LedgerEntry
from learning.state.sft import SftIndex, SftMember
from learning.state.tables import ClassState, LearningState, RouteStats
from learning.state.triggers import TriggerCounter

__all__ = [
    "ClassState",
    "Contribution",
    "ContributionLedger",
    "LearningState",
    "LedgerEntry",
    "RouteStats",
    "SftIndex",
    "SftMember",
    "TriggerCounter",
    "contribution_of",
    "pair_id_of",
]
