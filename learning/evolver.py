"""AgentConfigEvolver: recommend agent configs from traces and keep versioned TOML files.

Differences from the reference (docs/reference-differences.md): version numbers are the N in the
archive file name and never shift; files are written atomically by a TOML library (valid TOML for any
string); agent names are validated so nothing lands outside ``config_dir``; ``analyze`` can be limited to
one agent; ties break on name, not scan order.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from learning.errors import ConfigError
from learning.miner import mine
from learning.models import Trace
from learning.state.stats import FIXED_ONE
from learning.state.tables import ClassState, LearningState
from learning.store import TraceStore, resolve

_AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
HISTORY_DIR = ".history"


def validate_agent_name(name: str) -> str:
    if not _AGENT_NAME.match(name):
        raise ConfigError(
            f"agent name {name!r} is not allowed: use 1-128 letters, digits, '_' or '-', starting with a "
            "letter or digit"
        )
    return name


def max_turns_of(turns: dict[int, int]) -> int:
    """The reference's rule: p75 of tool-call counts (nearest rank, index int(n*0.75)) plus 2, at least 5."""
    n = sum(turns.values())
    if n <= 0:
        return 10
    index = min(int(n * 0.75), n - 1)
    seen = 0
    for value in sorted(turns):
        seen += turns[value]
        if seen > index:
            return max(value + 2, 5)
    return 10


def recommend(query_class: str, cls: ClassState) -> dict[str, Any] | None:
    """The evolver's recommendation for one class (None when no trace names an agent)."""
    agents = {a: s for a, s in cls.agents.items() if a and s.count > 0}
    if not agents:
        return None

    def agent_score(name: str) -> float:
        s = agents[name]
        return 0.6 * s.successes / s.count + 0.4 * s.feedback_sum / (s.count * FIXED_ONE)

    best_agent = min(agents, key=lambda a: (-agent_score(a), a))

    def tool_score(name: str) -> float:
        t = cls.tools[name]
        return (
            0.4 * t.successes / t.count
            + 0.4 * t.feedback_sum / (t.count * FIXED_ONE)
            + 0.2 * min(math.log1p(t.count) / 10, 1.0)
        )

    tools = sorted((t for t in cls.tools if cls.tools[t].count > 0), key=lambda t: (-tool_score(t), t))
    return {
        "query_class": query_class,
        "recommended_tools": tools,
        "recommended_agent": best_agent,
        "recommended_max_turns": max_turns_of(cls.turns),
        "sample_count": cls.count,
    }


def recommendations(state: LearningState) -> list[dict[str, Any]]:
    recs = []
    for name in sorted(state.classes):
        rec = recommend(name, state.classes[name])
        if rec is not None:
            recs.append(rec)
    return recs


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class AgentConfigEvolver:
    """Analyze traces to evolve agent TOML configs with versioning."""

    def __init__(self, trace_store: TraceStore | None, *, config_dir: str | Path, min_quality: float = 0.5) -> None:
        self.trace_store = trace_store
        self.config_dir = Path(config_dir)
        self.min_quality = min_quality
        self.history_dir = self.config_dir / HISTORY_DIR
        self.history_dir.mkdir(parents=True, exist_ok=True)

    # -- analysis -------------------------------------------------------------------------------
    def _traces(self, agent: str | None) -> list[Trace]:
        if self.trace_store is None:
            return []
        kwargs: dict[str, Any] = {"limit": None}
        if agent is not None:
            kwargs["agent"] = agent
        return list(resolve(self.trace_store.list_traces(**kwargs)))

    def analyze(self, *, agent: str | None = None) -> list[dict[str, Any]]:
        """Analyze traces, return recommendations per query class (alphabetical class order).

        Every trace counts, as in the reference (no quality filter); ``agent`` limits the traces read.
        """
        return recommendations(mine(self._traces(agent)).state)

    # -- files ----------------------------------------------------------------------------------
    def config_path(self, agent_name: str) -> Path:
        return self.config_dir / f"{validate_agent_name(agent_name)}.toml"

    def _archived(self, agent_name: str) -> dict[int, Path]:
        prefix, found = f"{agent_name}.v", {}
        for path in self.history_dir.iterdir():
            name = path.name
            if name.startswith(prefix) and name.endswith(".toml"):
                number = name[len(prefix) : -len(".toml")]
                if number.isdigit():
                    found[int(number)] = path
        return found

    def _archive(self, agent_name: str) -> int | None:
        current = self.config_path(agent_name)
        if not current.exists():
            return None
        archived = self._archived(agent_name)
        version = max(archived, default=0) + 1
        target = self.history_dir / f"{agent_name}.v{version}.toml"
        shutil.copy2(current, target)
        return version

    def read_config(self, agent_name: str) -> dict[str, Any] | None:
        path = self.config_path(agent_name)
        if not path.exists():
            return None
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        agent = data.get("agent")
        return dict(agent) if isinstance(agent, dict) else None

    def write_config(
        self,
        agent_name: str,
        *,
        tools: list[str],
        max_turns: int = 10,
        temperature: float = 0.3,
        system_prompt: str = "",
    ) -> Path:
        """Write agent TOML config, archiving previous version first."""
        path = self.config_path(agent_name)
        if max_turns < 1:
            raise ConfigError(f"max_turns must be >= 1, got {max_turns}")
        self._archive(agent_name)
        doc = {
            "agent": {
                "name": agent_name,
                "tools": list(tools),
                "max_turns": int(max_turns),
                "temperature": float(temperature),
                "system_prompt": system_prompt,
            }
        }
        _atomic_write(path, tomli_w.dumps(doc).encode("utf-8"))
        return path

    def list_versions(self, agent_name: str) -> list[dict[str, Any]]:
        """All versions, oldest first; archived ones keep their number, the current one is the highest."""
        archived = self._archived(validate_agent_name(agent_name))
        versions = [
            {"version": n, "path": str(p), "modified": p.stat().st_mtime, "current": False}
            for n, p in sorted(archived.items())
        ]
        current = self.config_path(agent_name)
        if current.exists():
            versions.append(
                {
                    "version": max(archived, default=0) + 1,
                    "path": str(current),
                    "modified": current.stat().st_mtime,
                    "current": True,
                }
            )
        return versions

    def current_version(self, agent_name: str) -> int | None:
        versions = self.list_versions(agent_name)
        return versions[-1]["version"] if versions and versions[-1]["current"] else None

    def rollback(self, agent_name: str, version: int) -> None:
        """Make ``version`` current again; the replaced file is archived first (nothing is lost)."""
        versions = {v["version"]: v for v in self.list_versions(agent_name)}
        if version not in versions:
            raise ValueError(
                f"Version {version} not found for agent '{agent_name}'. Available versions: {sorted(versions)}"
            )
        target = versions[version]
        if target["current"]:
            return
        data = Path(target["path"]).read_bytes()
        self._archive(agent_name)
        _atomic_write(self.config_path(agent_name), data)

    def remove_config(self, agent_name: str) -> None:
        """Archive and remove the current file (undoing a first write)."""
        if self._archive(agent_name) is not None:
            self.config_path(agent_name).unlink()
