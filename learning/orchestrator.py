"""LearningOrchestrator: one trace -> learn -> eval cycle, with rollback of a rejected cycle."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from learning.evolver import AgentConfigEvolver, recommendations
from learning.miner import TrainingDataMiner, agent_config_pairs, routing_pairs, sft_pairs
from learning.store import TraceStore

log = logging.getLogger(__name__)


class LearningOrchestrator:
    """Orchestrate a single trace->learn->eval cycle.

    Follows the reference's steps and statuses ("skipped", "completed", "rejected"), with these fixes:
    the store is read once per cycle, not three times; the evolver sees the same agent filter; each agent
    gets one config (from the class where it has most samples) that keeps its existing temperature and
    system prompt; and a rejected cycle restores every config it wrote (``result["rolled_back"]``).
    """

    def __init__(
        self,
        *,
        trace_store: TraceStore,
        config_dir: str | Path,
        eval_fn: Callable[[], float] | None = None,
        min_improvement: float = 0.02,
        min_sft_pairs: int = 10,
        min_quality: float = 0.7,
        lora_config: Any | None = None,
        model_name: str | None = None,
    ) -> None:
        self.trace_store = trace_store
        self.eval_fn = eval_fn
        self.min_improvement = min_improvement
        self.min_sft_pairs = min_sft_pairs
        self.lora_config = lora_config
        self.model_name = model_name
        self.miner = TrainingDataMiner(trace_store, min_quality=min_quality)
        self.evolver = AgentConfigEvolver(trace_store, config_dir=config_dir)

    def _write_configs(self, recs: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
        per_agent: dict[str, dict[str, Any]] = {}
        for rec in recs:
            agent = rec.get("recommended_agent") or "default"
            held = per_agent.get(agent)
            if held is None or rec["sample_count"] > held["sample_count"]:
                per_agent[agent] = rec
        written: list[tuple[str, int | None]] = []
        for agent, rec in sorted(per_agent.items()):
            previous = self.evolver.current_version(agent)
            existing = self.evolver.read_config(agent) or {}
            self.evolver.write_config(
                agent,
                tools=rec["recommended_tools"],
                max_turns=rec.get("recommended_max_turns") or 10,
                temperature=float(existing.get("temperature", 0.3)),
                system_prompt=str(existing.get("system_prompt", "")),
            )
            written.append((agent, previous))
        return written

    def _undo(self, written: list[tuple[str, int | None]]) -> list[str]:
        for agent, previous in written:
            if previous is None:
                self.evolver.remove_config(agent)
            else:
                self.evolver.rollback(agent, previous)
        return [agent for agent, _ in written]

    def _try_lora_training(self, sft: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            from learning.training.lora import HAS_TORCH, LoRATrainer
        except ImportError:
            return {"status": "skipped", "reason": "lora module unavailable"}
        if not HAS_TORCH:
            return {"status": "skipped", "reason": "torch not available"}
        assert self.lora_config is not None
        try:
            trainer = LoRATrainer(self.lora_config, model_name=self.model_name or "Qwen/Qwen3-0.6B")
            return dict(trainer.train(sft))
        except Exception as exc:
            log.exception("LoRA training failed")
            return {"status": "error", "reason": str(exc)}

    def run(self, *, agent_id: str | None = None) -> dict[str, Any]:
        """Execute one learning cycle (see the class docstring for the steps)."""
        result: dict[str, Any] = {"timestamp": time.time()}
        mined = self.miner.mine(agent_id)
        sft = sft_pairs(mined.sft)
        routing = routing_pairs(mined.state, self.miner.min_samples_per_class)
        agents = agent_config_pairs(mined.state, self.miner.min_samples_per_class)
        result["sft_pairs"] = len(sft)
        result["routing_classes"] = len(routing)
        result["agent_classes"] = len(agents)
        if not sft and not routing and not agents:
            result["status"] = "skipped"
            result["reason"] = "no training data available"
            return result

        baseline = self.eval_fn() if self.eval_fn is not None else None
        if baseline is not None:
            result["baseline_score"] = baseline

        result["routing_updated"] = len(routing) > 0
        result["routing_table"] = routing

        recs = recommendations(mined.state)
        result["agent_configs_evolved"] = len(recs) > 0
        written = self._write_configs(recs)

        result["lora_training"] = None
        if self.lora_config is not None and len(sft) >= self.min_sft_pairs:
            result["lora_training"] = self._try_lora_training(sft)

        post = self.eval_fn() if self.eval_fn is not None else None
        if post is not None:
            result["post_score"] = post

        if baseline is not None and post is not None:
            improvement = post - baseline
            result["improvement"] = improvement
            if improvement >= self.min_improvement:
                result["accepted"], result["status"] = True, "completed"
            else:
                result["accepted"], result["status"] = False, "rejected"
                result["reason"] = f"eval improvement {improvement:.4f} below threshold {self.min_improvement}"
                result["rolled_back"] = self._undo(written)
        else:
            result["accepted"], result["status"] = True, "completed"
        return result
