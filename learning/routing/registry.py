"""Registries of policies, keyed by name (the reference's generic registry pattern)."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> entry map with per-subclass storage."""

    _entries: ClassVar[dict[str, Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._entries = {}

    @classmethod
    def register_value(cls, key: str, value: T) -> None:
        if key in cls._entries:
            raise ValueError(f"{cls.__name__} already has an entry for '{key}'")
        cls._entries[key] = value

    @classmethod
    def register(cls, key: str) -> Any:
        def decorator(value: T) -> T:
            cls.register_value(key, value)
            return value

        return decorator

    @classmethod
    def get(cls, key: str) -> T:
        try:
            return cls._entries[key]  # type: ignore[no-any-return]
        except KeyError:
            raise KeyError(f"{cls.__name__} does not have an entry for '{key}'") from None

    @classmethod
    def create(cls, key: str, *args: Any, **kwargs: Any) -> Any:
        entry = cls.get(key)
        if not callable(entry):
            raise TypeError(f"{cls.__name__} entry '{key}' is not callable")
        return entry(*args, **kwargs)

    @classmethod
    def contains(cls, key: str) -> bool:
        return key in cls._entries

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(cls._entries)

    @classmethod
    def items(cls) -> tuple[tuple[str, T], ...]:
        return tuple(cls._entries.items())

    @classmethod
    def clear(cls) -> None:
        cls._entries.clear()


class RouterPolicyRegistry(Registry[Any]):
    """Router policies by name ("heuristic", "learned", ...)."""


class RewardRegistry(Registry[Any]):
    """Reward functions by name ("heuristic")."""
