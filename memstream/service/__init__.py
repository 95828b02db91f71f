"""The service layer: every memory operation and read, once, for every face.

- :mod:`.caller`: :class:`Caller`, who calls (principal and call context).
- :mod:`.service`: :class:`MemoryService`, the operations and reads, each passing
  :meth:`MemoryService.authorize`.
- :mod:`.backend`: :class:`Backend`, the protocol the service runs on;
  :mod:`.embedded` implements it over one store directory, :mod:`.worker` over a Kafka
  worker's shards.
"""

from .backend import Backend
from .caller import ANONYMOUS, Caller
from .embedded import EmbeddedBackend
from .service import ACTIONS, MemoryService

__all__ = ["ACTIONS", "ANONYMOUS", "Backend", "Caller", "EmbeddedBackend", "MemoryService"]
