"""Conversation templates: the data format, the built-in bank and user banks.

A bank file is JSON::

    {"format": 1, "topic": "vendor-quotes",
     "threads": [{"id": "vendor-quotes-001",
                  "subject": "{Quote|Pricing} for the {{them.company}} order",
                  "turns": ["Hi {{them.first_name}}, ...", "Hi {{them.first_name}}, ...", ...]}]}

``turns[0]`` opens the thread; each later turn is the other side's reply. In every turn
``{{me.*}}`` is the writer and ``{{them.*}}`` the reader. See ``docs/content.md``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mailwarm._errors import ConfigurationError
from mailwarm.content._spintax import SpintaxError, check_template

__all__ = ["TemplateBank", "ThreadTemplate", "builtin_bank"]


class ThreadTemplate(BaseModel):
    """One conversation: a subject and two or more turns, alternating between the two sides."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9_.-]+$")
    topic: str = "general"
    subject: str = Field(min_length=1, max_length=300)
    turns: tuple[str, ...] = Field(min_length=2, max_length=12)

    @field_validator("subject", "turns")
    @classmethod
    def _check_spintax(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        for text in (value,) if isinstance(value, str) else value:
            try:
                check_template(text)
            except SpintaxError as exc:
                raise ValueError(str(exc)) from None
        return value


class _BankFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: int = Field(default=1, ge=1, le=1)
    topic: str = Field(min_length=1)
    threads: list[dict[str, object]] = Field(min_length=1)


class TemplateBank:
    """An immutable collection of thread templates, looked up by id."""

    def __init__(self, threads: Iterable[ThreadTemplate]) -> None:
        self._threads: dict[str, ThreadTemplate] = {}
        for thread in threads:
            if thread.id in self._threads:
                raise ConfigurationError(f"duplicate thread id {thread.id!r} in template bank")
            self._threads[thread.id] = thread
        if not self._threads:
            raise ConfigurationError("a template bank needs at least one thread")
        self._ids = tuple(sorted(self._threads))

    def __len__(self) -> int:
        return len(self._threads)

    def __getitem__(self, thread_id: str) -> ThreadTemplate:
        return self._threads[thread_id]

    def __contains__(self, thread_id: object) -> bool:
        return thread_id in self._threads

    @property
    def ids(self) -> Sequence[str]:
        """Thread ids in a stable (sorted) order."""
        return self._ids

    @property
    def topics(self) -> set[str]:
        """The distinct topics of the bank."""
        return {t.topic for t in self._threads.values()}

    def merged(self, other: TemplateBank) -> TemplateBank:
        """A bank with this bank's threads and ``other``'s (``other`` wins on equal ids)."""
        combined = dict(self._threads)
        combined.update(other._threads)
        return TemplateBank(combined.values())

    @classmethod
    def from_json(cls, text: str, *, source: str = "<string>") -> TemplateBank:
        """Parse one bank file's JSON text; errors name the source, thread and field."""
        return cls(_parse_file(text, source))

    @classmethod
    def from_paths(cls, paths: Iterable[str | Path]) -> TemplateBank:
        """Load bank files, or every ``*.json`` in the given folders."""
        threads: list[ThreadTemplate] = []
        for path in map(Path, paths):
            files = sorted(path.glob("*.json")) if path.is_dir() else [path]
            for file in files:
                try:
                    text = file.read_text(encoding="utf-8")
                except OSError as exc:
                    raise ConfigurationError(
                        f"cannot read template bank {file}: {exc.strerror}"
                    ) from None
                threads.extend(_parse_file(text, str(file)))
        return cls(threads)


def _parse_file(text: str, source: str) -> list[ThreadTemplate]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{source}: not valid JSON ({exc.msg}, line {exc.lineno})"
        ) from None
    try:
        bank = _BankFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigurationError(f"{source}: {_explain(exc)}") from None
    threads = []
    for index, entry in enumerate(bank.threads):
        try:
            threads.append(ThreadTemplate.model_validate({"topic": bank.topic, **entry}))
        except ValidationError as exc:
            name = entry.get("id", f"#{index}")
            raise ConfigurationError(f"{source}: thread {name}: {_explain(exc)}") from None
    return threads


def _explain(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'file'}: {err['msg']}" for err in exc.errors()
    )


_BUILTIN: TemplateBank | None = None


def builtin_bank() -> TemplateBank:
    """The bank shipped with mailwarm (loaded once, then cached)."""
    global _BUILTIN
    if _BUILTIN is None:
        folder = resources.files("mailwarm.content") / "bank"
        threads: list[ThreadTemplate] = []
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".json"):
                threads.extend(_parse_file(entry.read_text(encoding="utf-8"), entry.name))
        _BUILTIN = TemplateBank(threads)
    return _BUILTIN
