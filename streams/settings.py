"""Settings, each declared once: a field's name, type, default and limits, and the
environment variable that sets it (``MEMSTREAM_`` and the name in capitals, or the
model's own prefix).

:class:`Settings` is the base of every group of settings (this module's
:class:`StoreSettings`, the Kafka runtime's, the faces' in :mod:`memstream.settings`).
Built with keyword arguments, those win, then the environment, then the defaults. An
invalid value raises :class:`SettingsError`, which names the variable (or the argument)
that holds it and the type expected, e.g. ``MEMSTREAM_BATCH_SIZE='abc' is not a valid
int (Input should be a valid integer, unable to parse string as an integer)``.
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

from memstream.schemas.codec import DEFAULT_MAX_EVENT_BYTES
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "SettingsError", "StoreSettings", "env_var", "type_name"]


class SettingsError(ValueError):
    """A setting's value is not of its type or out of its range."""


class Settings(BaseSettings):
    """A group of settings read from keyword arguments, then ``MEMSTREAM_*`` variables
    (an empty variable counts as unset)."""

    model_config = SettingsConfigDict(
        env_prefix="MEMSTREAM_", extra="forbid", env_ignore_empty=True
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_describe(type(self), exc, values)) from None


def env_var(model: type[Settings], field: str) -> str:
    """The environment variable of ``model``'s setting ``field``."""
    return f"{model.model_config.get('env_prefix', '')}{field}".upper()


def type_name(model: type[Settings], field: str) -> str:
    """The type of a setting, as its error messages name it: ``int``, ``float``, ``path``..."""
    annotation = model.model_fields[field].annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation is Path:
        return "path"
    if typing.get_origin(annotation) is Literal:
        return "choice (" + " or ".join(repr(a) for a in typing.get_args(annotation)) + ")"
    return getattr(annotation, "__name__", str(annotation))


def _describe(model: type[Settings], exc: ValidationError, values: dict[str, Any]) -> str:
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        if field not in model.model_fields:
            problems.append(f"{field}: {error['msg']}")
            continue
        var = env_var(model, field)
        expected = type_name(model, field)
        if field in values:
            where = f"{field}={values[field]!r}"
        elif var in os.environ:
            where = f"{var}={os.environ[var]!r}"
        else:
            where = f"{field}={error.get('input')!r}"
        problems.append(f"{where} is not a valid {expected} ({error['msg']})")
    return "; ".join(problems)


class StoreSettings(Settings):
    """How an embedded store runs (``streams.embedded.Options``)."""

    #: Largest event payload accepted, in bytes.
    max_event_bytes: int = Field(
        DEFAULT_MAX_EVENT_BYTES,
        ge=1,
        description=f"Largest event payload accepted, in bytes (default {DEFAULT_MAX_EVENT_BYTES}).",
    )
    #: ``fsync``: an acknowledged batch survives power loss; ``os``: it survives the
    #: process being killed (the operating system holds it), not a power cut.
    durability: Literal["fsync", "os"] = "fsync"
    #: Most records written to DuckDB in one transaction (the projector's batch, and the
    #: catch-up's). Each batch costs a handful of statements and one upsert of the memories
    #: it touched, whatever its size; while catching up, the first batch is decided before
    #: any write can overlap with it. 10,000 balances the two (docs/benchmarks.md).
    batch_size: int = Field(10_000, ge=1)
    #: Seconds a read waits for ``min_offset`` to be projected.
    read_wait: float = Field(10.0, ge=0)
    #: Seconds a read (or a ``flush`` given a timeout) waits beyond ``read_wait`` for a
    #: processor whose embedding model is still loading (a cold start on a busy machine
    #: can take a minute or more); the wait says what is loading and for how long.
    load_wait: float = Field(300.0, ge=0)
    #: Seconds between two ticks of a processor (its time-based saves and flushes).
    follow_interval: float = Field(1.0, gt=0)
    #: Seconds from an erase to the rewrite of the files that held its bytes (the core
    #: projection; the search indexes purge on the same delay): erasures within the delay
    #: share one rewrite. ``checkpoint()`` and ``close()`` do it at once.
    erase_scrub_delay: float = Field(1.0, ge=0)
