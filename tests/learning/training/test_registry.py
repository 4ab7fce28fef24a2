import pytest

from learning.errors import ConfigError
from learning.training.registry import AdapterRegistry


def make_adapter(tmp_path, name: str):
    d = tmp_path / name
    d.mkdir()
    (d / "adapter_model.safetensors").write_text(name)
    return d


def test_versions_promote_and_rollback(tmp_path):
    reg = AdapterRegistry(tmp_path / "reg")
    assert reg.current() is None and reg.list() == []
    v1 = reg.add(make_adapter(tmp_path, "a"), {"cycle_id": "global#1"})
    reg.promote(v1)
    v2 = reg.add(make_adapter(tmp_path, "b"), {"cycle_id": "global#2"})
    reg.promote(v2)
    assert (v1, v2, reg.current()) == (1, 2, 2)
    assert (reg.current_path() / "adapter_model.safetensors").read_text() == "b"
    assert reg.rollback() == 1 and reg.current() == 1
    assert reg.versions() == [1, 2]  # nothing deleted or renumbered
    assert [row["current"] for row in reg.list()] == [True, False]
    assert reg.list()[1]["cycle_id"] == "global#2"
    with pytest.raises(ConfigError, match="does not exist"):
        reg.promote(9)
    reg.promote(2)
    assert reg.rollback(1) == 1


def test_rollback_without_history_is_a_clear_error(tmp_path):
    reg = AdapterRegistry(tmp_path)
    reg.promote(reg.add(make_adapter(tmp_path, "a"), {}))
    with pytest.raises(ConfigError, match="nothing to roll back"):
        reg.rollback()
