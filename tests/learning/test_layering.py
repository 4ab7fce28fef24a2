import ast
from pathlib import Path

import pytest

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


def test_the_seeds_imports_work_as_the_seed_has_them(tmp_path):
    import subprocess
    import sys

    # LoRATrainer comes with `learning` only when asked for: importing the package stays torch-free
    code = (
        "import sys; import learning; assert 'torch' not in sys.modules, 'import learning loaded torch'; "
        "from learning import LLMOptimizer, OptimizationEngine, OptimizationStore, LoRATrainer; "
        "assert LoRATrainer.__name__ == 'LoRATrainer'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    from learning import OptimizationEngine, OptimizationStore
    from learning.optimize import OptimizationRun

    store = OptimizationStore(tmp_path / "o.db")  # synchronous, as in the seed
    run = OptimizationRun()
    store.save_run(run)
    assert store.get_run(run.run_id) == run and store.list_runs()[0]["run_id"] == run.run_id
    with pytest.raises(ValueError, match="No best trial"):
        OptimizationEngine.export_best_recipe(run, tmp_path / "recipe.toml")
