"""The search space: dimensions an optimizer may change, fixed params, constraints.

Unlike the reference, a proposal is checked against the space before anything is evaluated
(:meth:`SearchSpace.check`): values are repaired where the intent is clear (clamped into a range, an
integer rounded, a category matched case-insensitively, unknown subset members dropped) and rejected
where it is not (a category that does not exist, a number that is not a number). Every repair and
rejection comes with a sentence the optimizer LLM is shown on its next attempt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from learning.errors import ConfigError

DimType = Literal["categorical", "continuous", "integer", "subset", "text"]
DIM_TYPES: tuple[str, ...] = ("categorical", "continuous", "integer", "subset", "text")


class SearchDimension(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    dim_type: DimType = "categorical"
    values: list[Any] = Field(default_factory=list)
    low: float | None = None
    high: float | None = None
    description: str = ""
    primitive: str = ""
    # the value used where a proposal leaves this dimension out and no earlier trial set it
    default: Any = None

    def problems(self) -> list[str]:
        out = []
        if self.default is not None:
            _, _, rejection = _check_value(self, self.default)
            if rejection:
                out.append(f"{self.name}: default is invalid: {rejection}")
        if self.dim_type in ("categorical", "subset") and not self.values:
            out.append(f"{self.name}: a {self.dim_type} dimension needs a non-empty 'values' list")
        if self.dim_type in ("continuous", "integer"):
            if self.low is None or self.high is None:
                out.append(f"{self.name}: a {self.dim_type} dimension needs 'low' and 'high'")
            elif not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
                out.append(f"{self.name}: needs finite low <= high, got [{self.low}, {self.high}]")
        return out

    def fallback(self) -> Any:
        if self.default is not None:
            return _check_value(self, self.default)[0]
        if self.dim_type == "categorical":
            return self.values[0]
        if self.dim_type == "subset":
            return list(self.values)
        if self.dim_type == "text":
            return ""
        assert self.low is not None and self.high is not None
        mid = (self.low + self.high) / 2
        return round(mid) if self.dim_type == "integer" else mid


@dataclass
class CheckedParams:
    """A proposal after :meth:`SearchSpace.check`: what would be evaluated, and what was changed or refused."""

    params: dict[str, Any]
    repairs: list[str] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejections


class SearchSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dimensions: list[SearchDimension] = Field(default_factory=list)
    fixed: dict[str, Any] = Field(default_factory=dict)
    constraints: list[str] = Field(default_factory=list)

    def dimension(self, name: str) -> SearchDimension | None:
        for dim in self.dimensions:
            if dim.name == name:
                return dim
        return None

    def defaults(self) -> dict[str, Any]:
        return {**{d.name: d.fallback() for d in self.dimensions}, **self.fixed}

    def to_prompt_description(self) -> str:
        """Markdown for the optimizer prompt, in the reference's layout."""
        groups: dict[str, list[SearchDimension]] = {}
        for dim in self.dimensions:
            groups.setdefault(dim.primitive or "other", []).append(dim)
        lines = ["# Search Space", ""]
        for primitive in sorted(groups):
            lines.append(f"## {primitive.title()}")
            for dim in groups[primitive]:
                lines.append(f"- **{dim.name}** ({dim.dim_type})")
                if dim.description:
                    lines.append(f"  Description: {dim.description}")
                if dim.dim_type in ("categorical", "subset"):
                    lines.append(f"  Options: {dim.values!r}")
                elif dim.dim_type in ("continuous", "integer"):
                    lines.append(f"  Range: [{_num(dim.low)}, {_num(dim.high)}]")
                else:
                    lines.append("  Free-form text")
            lines.append("")
        if self.fixed:
            lines.append("## Fixed Parameters")
            lines.extend(f"- {k} = {self.fixed[k]}" for k in sorted(self.fixed))
            lines.append("")
        if self.constraints:
            lines.append("## Constraints")
            lines.extend(f"- {c}" for c in self.constraints)
            lines.append("")
        return "\n".join(lines)

    def check(self, proposed: dict[str, Any], *, base: dict[str, Any] | None = None) -> CheckedParams:
        """Validate a proposal; missing dimensions come from ``base`` (or the defaults), fixed params win."""
        fallback = {**self.defaults(), **(base or {})}
        out = CheckedParams(params={})
        for key in proposed:
            if self.dimension(key) is None and key not in self.fixed:
                out.repairs.append(f"unknown parameter {key!r} was ignored (not in the search space)")
        for dim in self.dimensions:
            if dim.name in self.fixed:
                continue
            if dim.name not in proposed:
                out.params[dim.name] = fallback[dim.name]
                out.repairs.append(f"{dim.name} was missing; kept {fallback[dim.name]!r}")
                continue
            value, repair, rejection = _check_value(dim, proposed[dim.name])
            if rejection:
                out.rejections.append(rejection)
                continue
            if repair:
                out.repairs.append(repair)
            out.params[dim.name] = value
        for key, value in self.fixed.items():
            if key in proposed and proposed[key] != value:
                out.repairs.append(f"{key} is fixed at {value!r}; the proposed {proposed[key]!r} was replaced")
            out.params[key] = value
        return out


def _num(x: float | None) -> str:
    if x is None:
        return "None"
    return str(int(x)) if float(x).is_integer() else str(x)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _check_value(dim: SearchDimension, value: Any) -> tuple[Any, str | None, str | None]:
    """(value to use, repair note, rejection reason)."""
    name = dim.name
    if dim.dim_type == "categorical":
        if value in dim.values:
            return value, None, None
        for option in dim.values:
            if isinstance(option, str) and isinstance(value, str) and option.lower() == value.strip().lower():
                return option, f"{name}: {value!r} read as {option!r}", None
        return None, None, f"{name} must be one of {dim.values!r}; got {value!r}"
    if dim.dim_type in ("continuous", "integer"):
        x = _as_number(value)
        if x is None or not math.isfinite(x):
            return None, None, f"{name} must be a number in [{_num(dim.low)}, {_num(dim.high)}]; got {value!r}"
        notes = []
        if not isinstance(value, int | float):
            notes.append(f"{name}: {value!r} read as the number {x:g}")
        assert dim.low is not None and dim.high is not None
        if x < dim.low or x > dim.high:
            clamped = min(max(x, dim.low), dim.high)
            notes.append(f"{name}: {x:g} is outside [{_num(dim.low)}, {_num(dim.high)}]; clamped to {clamped:g}")
            x = clamped
        if dim.dim_type == "integer":
            if not x.is_integer():
                notes.append(f"{name} is an integer; {x:g} rounded to {round(x)}")
            return round(x), "; ".join(notes) or None, None
        return x, "; ".join(notes) or None, None
    if dim.dim_type == "subset":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            return None, None, f"{name} must be a list drawn from {dim.values!r}; got {value!r}"
        kept = [v for i, v in enumerate(items) if v in dim.values and v not in items[:i]]
        dropped = [v for v in items if v not in dim.values]
        note = f"{name}: unknown members {dropped!r} dropped" if dropped else None
        return kept, note, None
    if not isinstance(value, str):
        return str(value), f"{name} is free text; {value!r} converted to a string", None
    return value, None, None


def build_search_space(cfg: dict[str, Any]) -> SearchSpace:
    """The space in ``cfg["optimize"]`` (a parsed TOML document); every problem is named at once."""
    opt = cfg.get("optimize", {})
    if not isinstance(opt, dict):
        raise ConfigError("[optimize] must be a table")
    entries = opt.get("search", [])
    if not isinstance(entries, list):
        raise ConfigError("optimize.search must be an array of tables ([[optimize.search]])")
    errors: list[str] = []
    dims: list[SearchDimension] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            errors.append(f"optimize.search[{i}] must be a table")
            continue
        unknown = set(entry) - {"name", "type", "values", "low", "high", "description", "default"}
        if unknown:
            errors.append(f"optimize.search[{i}]: unknown keys {sorted(unknown)}")
        name = str(entry.get("name", ""))
        kind = entry.get("type", "categorical")
        if kind not in DIM_TYPES:
            errors.append(f"optimize.search[{i}] ({name or '?'}): type must be one of {list(DIM_TYPES)}, got {kind!r}")
            continue
        try:
            dim = SearchDimension(
                name=name,
                dim_type=kind,
                values=entry.get("values", []),
                low=entry.get("low"),
                high=entry.get("high"),
                description=str(entry.get("description", "")),
                default=entry.get("default"),
                primitive=name.split(".", 1)[0] if "." in name else "",
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            errors.append(f"optimize.search[{i}] ({name or '?'}): {'.'.join(map(str, first['loc']))}: {first['msg']}")
            continue
        if name in seen:
            errors.append(f"optimize.search[{i}]: duplicate dimension {name!r}")
        seen.add(name)
        errors.extend(dim.problems())
        dims.append(dim)
    fixed = opt.get("fixed", {})
    if not isinstance(fixed, dict):
        errors.append("optimize.fixed must be a table")
        fixed = {}
    rules = opt.get("constraints", {})
    rules = rules.get("rules", []) if isinstance(rules, dict) else rules
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        errors.append("optimize.constraints.rules must be a list of strings")
        rules = []
    if errors:
        raise ConfigError("invalid search space: " + "; ".join(errors))
    return SearchSpace(dimensions=dims, fixed=dict(fixed), constraints=list(rules))


def dimension(name: str, kind: DimType, description: str, **kw: Any) -> SearchDimension:
    """A dimension whose primitive is the part of its dotted name before the first dot."""
    return SearchDimension(name=name, dim_type=kind, description=description, primitive=name.split(".")[0], **kw)


DEFAULT_SEARCH_SPACE = SearchSpace(
    dimensions=[
        dimension(
            "intelligence.model",
            "categorical",
            "The language model that answers",
            values=[
                "qwen3:8b",
                "qwen3:4b",
                "qwen3:1.7b",
                "llama3.1:8b",
                "llama3.1:70b",
                "gemma2:9b",
                "mistral:7b",
                "deepseek-r1:8b",
            ],
        ),
        dimension("intelligence.temperature", "continuous", "Sampling temperature", low=0.0, high=1.0),
        dimension("intelligence.max_tokens", "integer", "Maximum tokens per answer", low=256, high=8192),
        dimension("intelligence.top_p", "continuous", "Nucleus sampling threshold", low=0.0, high=1.0),
        dimension("intelligence.system_prompt", "text", "System prompt of the model"),
        dimension(
            "engine.backend",
            "categorical",
            "Inference engine",
            values=["ollama", "vllm", "sglang", "llamacpp", "mlx", "lmstudio", "exo", "nexa", "uzu", "apple_fm"],
        ),
        dimension(
            "agent.type",
            "categorical",
            "Agent architecture",
            values=["simple", "orchestrator", "native_react", "native_openhands"],
        ),
        dimension("agent.max_turns", "integer", "Maximum agent turns", low=1, high=30),
        dimension(
            "tools.tool_set",
            "subset",
            "Tools available to the agent",
            values=[
                "calculator",
                "think",
                "file_read",
                "file_write",
                "web_search",
                "code_interpreter",
                "llm",
                "shell_exec",
                "apply_patch",
                "http_request",
                "database_query",
            ],
        ),
        dimension(
            "learning.routing_policy",
            "categorical",
            "How queries are routed to models",
            values=["heuristic", "grpo", "bandit", "learned"],
        ),
    ],
    constraints=[
        "SimpleAgent (agent.type = simple) must use agent.max_turns = 1",
        "agent.max_turns must be at least 1",
        "intelligence.temperature and intelligence.top_p should not both be at extreme values",
    ],
)
