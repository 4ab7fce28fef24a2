"""docker-compose.yml validates offline, and every file it mounts from the repository exists."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is missing: Debian's docker-compose package (make test installs it where it can)",
)
def test_docker_compose_config_is_valid():
    checked = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config", "-q"], cwd=ROOT, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr


def test_every_mounted_repository_file_exists():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounted = [
        volume.split(":")[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if isinstance(volume, str) and volume.startswith("./")
    ]
    assert mounted, "the compose file mounts the monitoring files"
    # ./models is the operator's own base model folder (docs/operations.md), not the repository's
    missing = [path for path in mounted if path != "./models" and not (ROOT / path).exists()]
    assert missing == []
