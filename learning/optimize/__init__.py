"""LLM-guided configuration optimization (the seed's ``learning.optimize``), Kafka-free."""

from learning.optimize.backends import AnthropicBackend, BackendError, InferenceBackend, OpenAICompatibleBackend
from learning.optimize.engine import OptimizationEngine, export_best_recipe
from learning.optimize.llm_optimizer import LLMOptimizer, ProposalError
from learning.optimize.objectives import compute_pareto_frontier
from learning.optimize.replay_runner import LEARNING_SEARCH_SPACE, ReplayTrialRunner
from learning.optimize.runners import CommandTrialRunner, TrialRunner
from learning.optimize.search_space import DEFAULT_SEARCH_SPACE, SearchDimension, SearchSpace, build_search_space
from learning.optimize.store import AsyncOptimizationStore, OptimizationStore
from learning.optimize.types import (
    ALL_OBJECTIVES,
    DEFAULT_OBJECTIVES,
    BenchmarkScore,
    ObjectiveSpec,
    OptimizationRun,
    RunSummary,
    SampleScore,
    TrialConfig,
    TrialFeedback,
    TrialResult,
)

__all__ = [
    "ALL_OBJECTIVES",
    "DEFAULT_OBJECTIVES",
    "DEFAULT_SEARCH_SPACE",
    "LEARNING_SEARCH_SPACE",
    "AnthropicBackend",
    "AsyncOptimizationStore",
    "BackendError",
    "BenchmarkScore",
    "CommandTrialRunner",
    "InferenceBackend",
    "LLMOptimizer",
    "ObjectiveSpec",
    "OpenAICompatibleBackend",
    "OptimizationEngine",
    "OptimizationRun",
    "OptimizationStore",
    "ProposalError",
    "ReplayTrialRunner",
    "RunSummary",
    "SampleScore",
    "SearchDimension",
    "SearchSpace",
    "TrialConfig",
    "TrialFeedback",
    "TrialResult",
    "TrialRunner",
    "build_search_space",
    "compute_pareto_frontier",
    "export_best_recipe",
]
