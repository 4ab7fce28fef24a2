import ast
from pathlib import Path

import learning

FORBIDDEN = {"streams", "faust", "aiokafka", "mode", "kafka"}


def test_learning_imports_no_kafka():
    root = Path(learning.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_public_api():
    from learning import (  # noqa: F401
        AgentConfigEvolver,
        HeuristicRewardFunction,
        HeuristicRouter,
        LearningOrchestrator,
        RoutingContext,
        TrainingDataMiner,
        build_routing_context,
        ensure_registered,
    )
