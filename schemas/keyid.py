"""Key ids: which key sealed a payload, parsed in one place.

Two kinds of key seal payloads:

- a *subject key* (``subject#generation``, e.g. ``user/alice#1``): one per subject and
  generation. Since per-memory keys it only wraps data keys; records written by earlier
  versions were sealed directly under it (*legacy* records);
- a *data key* (``subject#generation/memory_id#n``, e.g. ``user/alice#1/m-42#1``): one per
  memory (``n`` counts the memory's data keys), kept in the key store wrapped by the
  subject key of that generation. Every payload is sealed under the data key of the memory
  its event is about, so erasing one memory destroys its data keys and nothing else, and
  erasing the subject destroys the subject keys and with them every data key they wrap.

Subjects and namespaces never contain ``#``, memory ids never contain ``/`` or ``#`` (see
the patterns in :mod:`memstream.schemas.events`), so the id parses without ambiguity.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeyId:
    """A parsed key id. ``memory_id is None``: a subject key."""

    subject: str
    generation: int
    memory_id: str | None = None
    #: the memory's data key number (0 for a subject key)
    dek_generation: int = 0

    @property
    def is_data_key(self) -> bool:
        return self.memory_id is not None

    @property
    def subject_kid(self) -> str:
        """The id of the subject key this key is (or is wrapped by)."""
        return f"{self.subject}#{self.generation}"

    def __str__(self) -> str:
        if self.memory_id is None:
            return self.subject_kid
        return f"{self.subject}#{self.generation}/{self.memory_id}#{self.dek_generation}"

    @staticmethod
    def subject_key(subject: str, generation: int) -> KeyId:
        return KeyId(subject, generation)

    @staticmethod
    def data_key(subject: str, generation: int, memory_id: str, n: int) -> KeyId:
        return KeyId(subject, generation, memory_id, n)

    @staticmethod
    def parse(kid: str) -> KeyId:
        """Parse ``subject#g`` or ``subject#g/memory#n``; ``ValueError`` on anything else."""
        hit = _parsed.get(kid)
        if hit is not None:
            return hit
        subject, sep, rest = kid.partition("#")
        if not sep or not subject:
            raise ValueError(f"not a key id: {kid!r}")
        gen, slash, tail = rest.partition("/")
        try:
            if not slash:
                k = KeyId(subject, int(gen))
            else:
                memory_id, sep2, n = tail.rpartition("#")
                if not sep2 or not memory_id or "#" in memory_id or "/" in memory_id:
                    raise ValueError
                k = KeyId(subject, int(gen), memory_id, int(n))
        except ValueError:
            raise ValueError(f"not a key id: {kid!r}") from None
        if len(_parsed) < 100_000:  # a catch-up asks for the same few ids again and again
            _parsed[kid] = k
        return k


_parsed: dict[str, KeyId] = {}
