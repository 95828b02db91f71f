"""The embedded driver: a durable local log plus in-process processors. No broker.

- :mod:`.layout`: the store directory's files, manifest and lock;
- :mod:`.runtime`: :class:`EmbeddedRuntime`, the write path (validate, seal, append,
  decide), the core projection's thread, reads that wait for an offset, and the
  processor runner over the decided events;
- :mod:`.catchup`: deciding and projecting a long run of records (open, replay);
- :mod:`.copies`: backups and the log copy of a replay.
"""

from .catchup import DUCKDB_ROW_GROUP, catch_up_batch
from .copies import LogPrefix
from .layout import (
    ACCESS_DIR,
    CORE_FILE,
    KEYS_FILE,
    LOCK_FILE,
    LOG_FILE,
    MANIFEST,
    SERVER_FILE,
    STATE_DIR,
    STORE_FORMAT,
    LogTampered,
    StoreLocked,
    StoreReadOnly,
    read_manifest,
    remove_store,
)
from .runtime import (
    EmbeddedRuntime,
    NotCaughtUp,
    OpenCheck,
    Options,
    ProgressFactory,
    ProjectorFailed,
)

__all__ = [
    "ACCESS_DIR",
    "CORE_FILE",
    "DUCKDB_ROW_GROUP",
    "KEYS_FILE",
    "LOCK_FILE",
    "LOG_FILE",
    "MANIFEST",
    "SERVER_FILE",
    "STATE_DIR",
    "STORE_FORMAT",
    "EmbeddedRuntime",
    "LogPrefix",
    "LogTampered",
    "NotCaughtUp",
    "OpenCheck",
    "Options",
    "ProgressFactory",
    "ProjectorFailed",
    "StoreLocked",
    "StoreReadOnly",
    "catch_up_batch",
    "read_manifest",
    "remove_store",
]
