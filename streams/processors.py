"""Processors registered once, run by both drivers.

A package adds a processor to every memstream store by naming a factory in its
distribution's entry points, group ``memstream.processors``::

    [project.entry-points."memstream.processors"]
    word-count = "mypackage.counting:WordCount"

A factory takes the directory where the processor keeps its state and returns a
:class:`~memstream.projections.processor.Processor`. The embedded driver calls it with
``<store>/state/processors/<name>``; the Kafka worker once per shard it owns, with
``<shard>/processors/<name>``. Each driver runs what the factories return on its
:class:`~memstream.streams.runner.ProcessorRunner`, beside the built-in processors (the
search indexes, the usage indicators): nothing in either driver changes for a new one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from memstream.projections.processor import Processor

__all__ = ["ENTRY_POINT_GROUP", "ProcessorFactory", "build", "registered"]

ENTRY_POINT_GROUP = "memstream.processors"

#: Makes a processor that keeps its state under the directory it is given.
ProcessorFactory = Callable[[Path], Processor]

log = logging.getLogger("memstream.processors")


class ProcessorNotLoaded(RuntimeError):
    """A registered processor's factory cannot be imported or does not make a processor."""


def registered() -> dict[str, ProcessorFactory]:
    """The factories installed packages register, by entry point name (sorted)."""
    out: dict[str, ProcessorFactory] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            out[ep.name] = ep.load()
        except Exception as e:  # name the package and the fix, not a bare ImportError
            raise ProcessorNotLoaded(
                f"the processor {ep.name!r} registered as {ep.value!r} (entry point group "
                f"{ENTRY_POINT_GROUP!r}) cannot be loaded: {e!r}; fix or uninstall its package"
            ) from e
    return out


def build(root: Path) -> list[Processor]:
    """One processor per registered factory, each with its own directory under ``root``."""
    out = []
    for name, factory in registered().items():
        directory = root / name
        directory.mkdir(parents=True, exist_ok=True)
        processor = factory(directory)
        for attr in ("name", "start", "process", "tick", "close"):
            if not hasattr(processor, attr):
                raise ProcessorNotLoaded(
                    f"the processor {name!r} ({factory!r}) has no {attr!r}: a processor "
                    "needs name, start, process, tick and close (see "
                    "memstream.projections.processor.Processor)"
                )
        log.info("processor %s registered by an installed package", processor.name)
        out.append(processor)
    return out
