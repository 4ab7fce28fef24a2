"""Learning primitive — router policies, reward functions, and trace-driven learning.

Pure Python: nothing here imports Kafka, faust or aiokafka (tests/learning/test_layering.py checks).
"""

from typing import Any

from learning.classifier import CLASSIFIER_VERSION, build_routing_context, classify_query
from learning.errors import TracelearnError
from learning.evolver import AgentConfigEvolver
from learning.miner import TrainingDataMiner
from learning.models import FeedbackEvent, Trace, TraceEvent, TraceStep
from learning.optimize import LLMOptimizer, OptimizationEngine, OptimizationStore
from learning.orchestrator import LearningOrchestrator
from learning.reward import HeuristicRewardFunction, RewardFunction
from learning.routing.heuristic import HeuristicRouter
from learning.routing.policy import DefaultQueryAnalyzer, QueryAnalyzer, RouterPolicy
from learning.routing.registry import RewardRegistry, RouterPolicyRegistry
from learning.store import InMemoryTraceStore, OpenJarvisTraceStore, TraceStore
from learning.training.config import LoRATrainingConfig
from learning.types import RoutingContext, StepType


def ensure_registered() -> None:
    """Register the built-in policies (idempotent: safe after ``clear()`` and on repeated calls)."""
    if not RouterPolicyRegistry.contains("heuristic"):
        RouterPolicyRegistry.register_value("heuristic", HeuristicRouter)
    if not RewardRegistry.contains("heuristic"):
        RewardRegistry.register_value("heuristic", HeuristicRewardFunction)


ensure_registered()


def __getattr__(name: str) -> Any:
    # LoRATrainer imports torch and transformers: only when it is asked for, so that importing `learning`
    # stays light (the stream worker and the SDK never train)
    if name == "LoRATrainer":
        from learning.training.lora import LoRATrainer

        return LoRATrainer
    raise AttributeError(f"module 'learning' has no attribute {name!r}")


__all__ = [
    "CLASSIFIER_VERSION",
    "AgentConfigEvolver",
    "DefaultQueryAnalyzer",
    "FeedbackEvent",
    "HeuristicRewardFunction",
    "HeuristicRouter",
    "InMemoryTraceStore",
    "LLMOptimizer",
    "LearningOrchestrator",
    "LoRATrainer",
    "LoRATrainingConfig",
    "OpenJarvisTraceStore",
    "OptimizationEngine",
    "OptimizationStore",
    "QueryAnalyzer",
    "RewardFunction",
    "RewardRegistry",
    "RouterPolicy",
    "RouterPolicyRegistry",
    "RoutingContext",
    "StepType",
    "Trace",
    "TraceEvent",
    "TraceStep",
    "TraceStore",
    "TracelearnError",
    "TrainingDataMiner",
    "build_routing_context",
    "classify_query",
    "ensure_registered",
]
