"""The SDK over HTTP.

- :mod:`.store`: :class:`HttpMemoryStore`, the SDK over a running ``memstream serve``.
- :mod:`.reads`: :class:`HttpReads`, the reads of the HTTP API, shared with the Kafka SDK
  (:class:`memstream.kafka.KafkaMemoryStore`) and the workers' forwarding.
- :mod:`.pubsub`: subscriptions and publications, and :class:`HttpSubscriber` (Server-Sent
  Events).
- :mod:`.transport`: one request, and its error mapped back onto the SDK's exceptions.
"""

from memstream.wire import format_point, parse_point

from .pubsub import HttpSubscriber
from .reads import HttpReads
from .store import HttpMemoryStore
from .transport import DEFAULT_TIMEOUT, LONG_TIMEOUT, ServerError, ServerUnavailable

__all__ = [
    "DEFAULT_TIMEOUT",
    "LONG_TIMEOUT",
    "HttpMemoryStore",
    "HttpReads",
    "HttpSubscriber",
    "ServerError",
    "ServerUnavailable",
    "format_point",
    "parse_point",
]
