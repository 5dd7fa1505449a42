"""The local provider: every task answered in-process on CPU, with no keys and no network.

Model work runs off the event loop (so Faust's heartbeats and commits stay on time) on two
dedicated threads: one for onnxruntime (embeddings, classifiers) and one for spaCy (extraction).
Two, not more: each library saturates about one core, and on 2 cores running the ticket workflow's
independent classify and extract steps side by side was measured faster than running them in turn.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from gateway.local import summarize as extractive
from gateway.local.artifacts import artifact_dir, resolve
from gateway.local.classifier import KernelHead
from gateway.local.embedder import Embedder, FloatMatrix
from gateway.local.extraction import EntityExtractor
from gateway.local.topics import TopicClassifier
from gateway.models import ModelRequest, ProviderResult, Task

PROVIDER_NAME = "local"
TOKEN_MEMO_SIZE = 8192


class ModelNotTrained(RuntimeError):
    """No classifier artifact exists yet; ``riverbed train`` creates one."""


class _EmbeddingMemo:
    """Bounded text→vector memo so a later step re-embedding the same text costs nothing.

    An embedding is a pure function of the text, so sharing it across tenants reveals nothing;
    answer caches (which are tenant-scoped) live in the gateway, not here.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._items: OrderedDict[bytes, np.ndarray[Any, Any]] = OrderedDict()

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def lookup(self, texts: Sequence[str]) -> list[np.ndarray[Any, Any] | None]:
        found: list[np.ndarray[Any, Any] | None] = []
        for text in texts:
            key = self.key(text)
            vec = self._items.get(key)
            if vec is not None:
                self._items.move_to_end(key)
            found.append(vec)
        return found

    def store(self, texts: Sequence[str], vectors: FloatMatrix) -> None:
        for text, vec in zip(texts, vectors, strict=True):
            key = self.key(text)
            self._items[key] = vec
            self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)


class LocalProvider:
    name = PROVIDER_NAME

    def __init__(self, models_dir: Path, intent_model: str) -> None:
        intent_model, version = resolve(models_dir, intent_model)
        if version is None:
            raise ModelNotTrained(
                f"no '{intent_model}' classifier under {models_dir}; run `riverbed train` first"
            )
        self.embedder = Embedder(spin=False)  # shares the cores with the spaCy thread
        self.extractor = EntityExtractor()
        self.topics = TopicClassifier(self.embedder)
        self.intent_head = KernelHead.load(artifact_dir(models_dir, intent_model, version))
        self.intent_model = intent_model
        self.intent_version = version
        self._memo = _EmbeddingMemo()
        self._token_counts: OrderedDict[bytes, int] = OrderedDict()
        self._token_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-onnx")
        self._nlp_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-spacy")

    def model_for(self, task: Task) -> str:
        return {
            Task.EMBED: self.embedder.name,
            Task.CLASSIFY_INTENT: self.intent_model,
            Task.CLASSIFY_TOPIC: "topic-centroids",
            Task.EXTRACT: self.extractor.name,
            Task.SUMMARIZE: extractive.MODEL_NAME,
        }[task]

    def prompt_version(self, task: Task) -> str:
        """What identifies the 'prompt' of a local model: its artifact or config version."""
        if task is Task.CLASSIFY_INTENT:
            return f"{self.intent_model}@{self.intent_version}"
        if task is Task.CLASSIFY_TOPIC:
            return self.topics.version
        return "v1"

    async def run(self, task: Task, requests: Sequence[ModelRequest]) -> list[ProviderResult]:
        loop = asyncio.get_running_loop()
        executor = self._nlp_executor if task is Task.EXTRACT else self._executor
        return await loop.run_in_executor(executor, self._run_sync, task, list(requests))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._nlp_executor.shutdown(wait=False, cancel_futures=True)

    # -- synchronous work, on the model thread ------------------------------------------------

    def _run_sync(self, task: Task, requests: list[ModelRequest]) -> list[ProviderResult]:
        handlers = {
            Task.EMBED: self._embed,
            Task.CLASSIFY_INTENT: self._classify_intent,
            Task.CLASSIFY_TOPIC: self._classify_topic,
            Task.EXTRACT: self._extract,
            Task.SUMMARIZE: self._summarize,
        }
        return handlers[task](requests)

    def _vectors(self, texts: Sequence[str]) -> tuple[FloatMatrix, bool]:
        """Embeddings for texts, memo first; the flag says whether every one was a memo hit.
        Token counts of freshly embedded texts go into the token memo on the way."""
        cached = self._memo.lookup(texts)
        missing = [t for t, v in zip(texts, cached, strict=True) if v is None]
        fresh_vectors, fresh_counts = self.embedder.embed_counted(missing)
        fresh = iter(fresh_vectors)
        out = np.empty((len(texts), self.embedder.dimensions), dtype=np.float32)
        for i, vec in enumerate(cached):
            out[i] = next(fresh) if vec is None else vec
        if missing:
            self._memo.store(missing, fresh_vectors)
            self._remember_counts(missing, fresh_counts)
        return out, not missing

    def _remember_counts(self, texts: Sequence[str], counts: Sequence[int]) -> None:
        with self._token_lock:
            for text, count in zip(texts, counts, strict=True):
                self._token_counts[_EmbeddingMemo.key(text)] = count
            while len(self._token_counts) > TOKEN_MEMO_SIZE:
                self._token_counts.popitem(last=False)

    def _tokens(self, requests: Sequence[ModelRequest]) -> list[int]:
        """Usage per request; counted once per distinct text (every step of a workflow reports it)."""
        texts = [" ".join(r.inputs) for r in requests]
        keys = [_EmbeddingMemo.key(t) for t in texts]
        with self._token_lock:  # called from both model threads
            missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in self._token_counts}
            if missing:
                counts = self.embedder.count_tokens(list(missing.values()))
                self._token_counts.update(zip(missing, counts, strict=True))
            found = [self._token_counts[k] for k in keys]
            while len(self._token_counts) > TOKEN_MEMO_SIZE:
                self._token_counts.popitem(last=False)
        return found

    def _embed(self, requests: list[ModelRequest]) -> list[ProviderResult]:
        flat = [text for r in requests for text in r.inputs]
        vectors, all_hit = self._vectors(flat)
        results, offset = [], 0
        tokens = self._tokens(requests)
        for r, n_tokens in zip(requests, tokens, strict=True):
            n = len(r.inputs)
            results.append(ProviderResult(vectors[offset : offset + n], n_tokens, cached=all_hit))
            offset += n
        return results

    def _classify_intent(self, requests: list[ModelRequest]) -> list[ProviderResult]:
        vectors, _ = self._vectors([r.text for r in requests])
        predictions = self.intent_head.predict(vectors)
        tokens = self._tokens(requests)
        return [ProviderResult(p, t, 1) for p, t in zip(predictions, tokens, strict=True)]

    def _classify_topic(self, requests: list[ModelRequest]) -> list[ProviderResult]:
        results = []
        for r, n_tokens in zip(requests, self._tokens(requests), strict=True):
            vectors, _ = self._vectors(r.inputs)
            results.append(ProviderResult(self.topics.scores(vectors), n_tokens, 1))
        return results

    def _extract(self, requests: list[ModelRequest]) -> list[ProviderResult]:
        """Usage is spaCy's own token count: what this model processed, at no extra cost."""
        extracted = self.extractor.extract_counted([r.text for r in requests])
        return [ProviderResult(entities, n_tokens, len(entities)) for entities, n_tokens in extracted]

    def _summarize(self, requests: list[ModelRequest]) -> list[ProviderResult]:
        results = []
        for r, n_tokens in zip(requests, self._tokens(requests), strict=True):
            summary = extractive.summarize(r.text, max_sentences=int(r.options.get("max_sentences", 3)))
            out_tokens = len(summary.split())
            results.append(ProviderResult(summary, n_tokens, out_tokens))
        return results
