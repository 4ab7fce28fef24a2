"""A closed-loop routing scenario: a synthetic fleet whose true qualities the simulator knows.

Written as a small TOML file (``tracelearn simulate --print-scenario`` prints the built-in one):

    seed = 7
    queries_per_class = 1000          # routed queries of each class
    rated_per_hour = 600              # of each class: sets the event-time clock the half-life runs on
    feedback_sd = 0.15                # feedback = true quality + N(0, feedback_sd), clipped to [0, 1]
    drift_at = 400                    # the class's query number at which its best model degrades
    drift_by = 0.25
    default_model = "mid-32b"         # the heuristic fallback's default (HeuristicRouter)

    [models.small-8b]                 # cost per query and size (the heuristic picks by size)
    cost_usd = 0.0002
    size_b = 8

    [classes.code]
    query = "def total(xs): return sum(xs)  # why is this slow on big lists?"
    quality = { large-70b = 0.90, coder-34b = 0.80, mid-32b = 0.65, small-8b = 0.50 }

    [added]                           # a model that joins the fleet later (optional)
    name = "next-40b"
    at = 700                          # the class's query number at which it becomes available
    over_best = 0.06                  # its quality: the class's best at that point plus this
    cost_usd = 0.0012
    size_b = 40
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from learning.errors import ConfigError

DEFAULT_SCENARIO = """\
# tracelearn's built-in closed-loop scenario: 3 classes x 4 models, the heuristic's choice second best by
# 0.10 in each class; the best model of each class degrades by 0.25 at its 400th query; a better model joins
# at the 700th.
seed = 7
queries_per_class = 1000
rated_per_hour = 600
feedback_sd = 0.15
drift_at = 400
drift_by = 0.25
default_model = "mid-32b"

[models.small-8b]
cost_usd = 0.0002
size_b = 8

[models.mid-32b]
cost_usd = 0.0008
size_b = 32

[models.coder-34b]
cost_usd = 0.0009
size_b = 34

[models.large-70b]
cost_usd = 0.0020
size_b = 70

[classes.code]
query = "def total(xs): return sum(xs)  # why is this slow on big lists?"
quality = { large-70b = 0.90, coder-34b = 0.80, mid-32b = 0.65, small-8b = 0.50 }

[classes.math]
query = "Solve for x: 3x + 7 = 22, and check the answer by substitution."
quality = { coder-34b = 0.88, large-70b = 0.78, mid-32b = 0.70, small-8b = 0.45 }

[classes.general]
query = "What should I pack for a week of hiking in the Alps in early autumn?"
quality = { small-8b = 0.85, mid-32b = 0.75, large-70b = 0.72, coder-34b = 0.60 }

[added]
name = "next-40b"
at = 700
over_best = 0.06
cost_usd = 0.0012
size_b = 40
"""


@dataclass(frozen=True)
class ModelSpec:
    cost_usd: float
    size_b: float


@dataclass(frozen=True)
class ClassSpec:
    name: str
    query: str
    quality: dict[str, float]


@dataclass(frozen=True)
class AddedModel:
    name: str
    at: int
    over_best: float
    cost_usd: float
    size_b: float


@dataclass(frozen=True)
class Scenario:
    models: dict[str, ModelSpec]
    classes: list[ClassSpec]
    seed: int = 7
    queries_per_class: int = 1000
    rated_per_hour: float = 600.0
    feedback_sd: float = 0.15
    drift_at: int | None = 400
    drift_by: float = 0.25
    default_model: str = ""
    added: AddedModel | None = None
    source: str = field(default="built-in", compare=False)

    @property
    def seconds_per_query(self) -> float:
        """Event time between two queries of one class."""
        return 3600.0 / self.rated_per_hour

    def available(self, query_number: int) -> list[str]:
        """The fleet's models at a class's ``query_number`` (0-based)."""
        names = sorted(self.models)
        if self.added is not None and query_number >= self.added.at:
            names.append(self.added.name)
        return names

    def quality(self, cls: ClassSpec, model: str, query_number: int) -> float:
        """The true mean feedback of ``model`` on the class's ``query_number``-th query."""
        base = dict(cls.quality)
        best = max(base, key=lambda m: (base[m], m))
        if self.drift_at is not None and query_number >= self.drift_at:
            base[best] -= self.drift_by
        if self.added is not None and model == self.added.name:
            at_addition = dict(cls.quality)
            if self.drift_at is not None and self.added.at >= self.drift_at:
                at_addition[best] -= self.drift_by
            return min(1.0, max(at_addition.values()) + self.added.over_best)
        return base[model]

    def best(self, cls: ClassSpec, query_number: int) -> tuple[str, float]:
        """The truly best available model at that query, and its quality."""
        scored = [(self.quality(cls, m, query_number), m) for m in self.available(query_number)]
        quality, model = max(scored)
        return model, quality


def load(path: Path | None) -> Scenario:
    """The scenario in ``path``, or the built-in one; raises :class:`ConfigError` naming what is wrong."""
    text = DEFAULT_SCENARIO if path is None else path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not TOML: {exc}") from None
    return parse(data, source=str(path) if path else "built-in")


def parse(data: dict[str, Any], *, source: str = "built-in") -> Scenario:
    try:
        models = {name: ModelSpec(float(m["cost_usd"]), float(m["size_b"])) for name, m in data["models"].items()}
        classes = [
            ClassSpec(name, str(c["query"]), {m: float(q) for m, q in c["quality"].items()})
            for name, c in data["classes"].items()
        ]
        added_data = data.get("added")
        added = (
            AddedModel(
                str(added_data["name"]),
                int(added_data["at"]),
                float(added_data["over_best"]),
                float(added_data["cost_usd"]),
                float(added_data["size_b"]),
            )
            if added_data
            else None
        )
        scenario = Scenario(
            models=models,
            classes=classes,
            seed=int(data.get("seed", 7)),
            queries_per_class=int(data.get("queries_per_class", 1000)),
            rated_per_hour=float(data.get("rated_per_hour", 600)),
            feedback_sd=float(data.get("feedback_sd", 0.15)),
            drift_at=int(data["drift_at"]) if data.get("drift_at") is not None else None,
            drift_by=float(data.get("drift_by", 0.25)),
            default_model=str(data.get("default_model", "")),
            added=added,
            source=source,
        )
    except KeyError as exc:
        raise ConfigError(f"scenario {source}: missing {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"scenario {source}: {exc}") from None
    for cls in scenario.classes:
        if set(cls.quality) != set(models):
            raise ConfigError(f"scenario {source}: class {cls.name!r} must give a quality for each of {sorted(models)}")
    if not scenario.classes or scenario.queries_per_class < 1 or scenario.rated_per_hour <= 0:
        raise ConfigError(f"scenario {source}: needs classes, queries_per_class >= 1 and rated_per_hour > 0")
    return scenario
