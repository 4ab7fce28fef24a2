from __future__ import annotations

import pytest

from streams.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(bootstrap_servers="x:1", state_dir=tmp_path, min_samples=1, sft_trigger_threshold=2)
