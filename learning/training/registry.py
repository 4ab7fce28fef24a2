"""A versioned adapter registry on the filesystem: ``v<N>`` directories, a CURRENT pointer, a history.

Versions are never renumbered or deleted by promote/rollback; the pointer file is replaced atomically, so
a reader sees either the old or the new current adapter, never a half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from learning.errors import ConfigError


class AdapterRegistry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "adapters"
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self.pointer = self.root / "CURRENT"
        self.history_file = self.root / "history.jsonl"

    def versions(self) -> list[int]:
        found = []
        for path in self.versions_dir.iterdir():
            if path.is_dir() and path.name.startswith("v") and path.name[1:].isdigit():
                found.append(int(path.name[1:]))
        return sorted(found)

    def path(self, version: int) -> Path:
        return self.versions_dir / f"v{version}"

    def metadata(self, version: int) -> dict[str, Any]:
        meta = self.path(version) / "tracelearn.json"
        return dict(json.loads(meta.read_text())) if meta.exists() else {}

    def current(self) -> int | None:
        if not self.pointer.exists():
            return None
        text = self.pointer.read_text().strip()
        return int(text) if text.isdigit() else None

    def current_path(self) -> Path | None:
        version = self.current()
        return self.path(version) if version is not None else None

    def add(self, adapter_dir: str | Path, metadata: dict[str, Any]) -> int:
        """Copy an adapter in as the next version (not yet current)."""
        version = max(self.versions(), default=0) + 1
        staging = Path(tempfile.mkdtemp(dir=self.versions_dir, prefix=".incoming-"))
        try:
            shutil.copytree(adapter_dir, staging, dirs_exist_ok=True)
            (staging / "tracelearn.json").write_text(
                json.dumps({**metadata, "version": version, "created_at": time.time()}, indent=2)
            )
            staging.rename(self.path(version))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return version

    def _set_current(self, version: int, action: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".CURRENT.")
        with os.fdopen(fd, "w") as fh:
            fh.write(str(version))
            fh.flush()
            os.fsync(fh.fileno())
        previous = self.current()
        os.replace(tmp, self.pointer)
        with self.history_file.open("a") as fh:
            fh.write(json.dumps({"action": action, "version": version, "previous": previous, "at": time.time()}) + "\n")

    def promote(self, version: int) -> None:
        if version not in self.versions():
            raise ConfigError(f"adapter version {version} does not exist; available: {self.versions()}")
        self._set_current(version, "promote")

    def history(self) -> list[dict[str, Any]]:
        if not self.history_file.exists():
            return []
        return [json.loads(line) for line in self.history_file.read_text().splitlines() if line.strip()]

    def rollback(self, version: int | None = None) -> int:
        """Make ``version`` current, or by default the version that was current before this one."""
        if version is None:
            current = self.current()
            previous = [h["previous"] for h in self.history() if h["version"] == current and h["previous"]]
            if current is None or not previous:
                raise ConfigError("nothing to roll back to: no earlier current adapter is recorded")
            version = int(previous[-1])
        if version not in self.versions():
            raise ConfigError(f"adapter version {version} does not exist; available: {self.versions()}")
        self._set_current(version, "rollback")
        return version

    def list(self) -> list[dict[str, Any]]:
        current = self.current()
        return [
            {**self.metadata(v), "version": v, "current": v == current, "path": str(self.path(v))}
            for v in self.versions()
        ]
