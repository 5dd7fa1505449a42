"""Intent head on frozen MiniLM sentence embeddings: RBF kernel ridge regression + temperature softmax.

Why this head. Candidates were compared by stratified 5-fold cross-validation on the BANKING77
*training* split only (10,003 rows, 77 intents); the official test split (3,080 rows) was scored
once per candidate for the record, never used to choose. ECE = expected calibration error of the
max probability, 15 equal-width bins. "+ T" = temperature fitted on out-of-fold scores.

    candidate                                          CV acc  CV ECE  test acc  test ECE
    logistic regression C=10 (unit vectors)            0.9209  0.0761  0.9299    0.0708
    logistic regression C=30                           0.9209  0.0291  0.9299    0.0276
    logistic regression C=100                          0.9176  0.0094  0.9289    0.0119
    logistic regression C=10 + T                       0.9209  0.0059  0.9299    0.0124
    logistic regression C=10, balanced classes + T     0.9207  0.0046  0.9305    0.0109
    StandardScaler + logistic regression C=0.1         0.9218  0.0185  0.9282    0.0170
    LinearSVC C=1 + T                                  0.9219  0.0069  0.9286    0.0168
    LinearSVC C=1 + CalibratedClassifierCV (sigmoid)   0.9180  0.1067  0.9273    0.0982
    MLP (512,) alpha=1e-3, 40 epochs + T               0.9188  0.0076  0.9227    0.0090
    Nystroem RBF (1,500 comp.) + logistic C=100 + T    0.9220  0.0078  0.9328    0.0155
    RBF SVC C=3 (vote scores; accuracy reference)      0.9283  0.0997  0.9325    0.1018
    RBF kernel ridge gamma=1 ridge=0.1 + T  (chosen)   0.9321  0.0225  0.9390    0.0281

Every linear probe saturates near 0.930 on test (0.921 CV): the intents still confused are not
linearly separable in 384 dimensions, and an MLP without dropout overfits 10k rows. An exact RBF
kernel adds the missing local structure and gains about a point on both CV and test. On a
gamma × ridge grid repeated over three CV seeds (3 × 5 folds), gamma in [1, 2] and ridge in
[0.1, 0.3] form a plateau (0.9322–0.9335); gamma=1, ridge=0.1 tied for the best accuracy
(0.9335 ± 0.0011) and had the lower ECE of the tied pair, so it is the default.

Kernel ridge has a closed form: one Cholesky solve of (K + ridge·I)·A = Y − mean(Y) with one-hot
targets Y, about 4 s for the full training split on two cores. The whole :func:`train_head`
(5 folds + final fit) takes ~14 s and peaks at ~650 MB. Raw ridge scores are not probabilities,
so they are divided by a temperature and soft-maxed; the temperature minimises log loss on the
out-of-fold scores of that same cross-validation, so no training rows are set aside for it. The
reported CV ECE is cross-fitted: each fold's rows use a temperature fitted on the other folds.

Prediction is pure numpy, ``softmax((exp(-gamma·‖x − s‖²) @ A + b) / T)``: two matrix multiplies
against the stored training vectors, ~2 ms for a batch of 16 queries and 0.2 s for 3,080. The
artifact therefore keeps the training embeddings (10,003 × 384 float32 ≈ 15 MB) plus the dual
weights (≈ 3 MB). The n × n kernel caps training at :data:`MAX_TRAIN_ROWS` rows (1.6 GB of
float32 at the cap).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.linalg  # type: ignore[import-untyped, unused-ignore]
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from gateway.local.artifacts import META_FILE, atomic_directory
from gateway.models import Prediction

FloatMatrix = npt.NDArray[np.float32]
FloatVector = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.intp]

FORMAT = "riverbed-intent-head"
FORMAT_VERSION = 1
KIND = "rbf-kernel-ridge+temperature"
WEIGHTS_FILE = "weights.npz"

GAMMA = 1.0
RIDGE = 0.1
FOLDS = 5
TOP_K = 3
ECE_BINS = 15
MAX_TRAIN_ROWS = 20_000
_PREDICT_CHUNK = 2048


@dataclass(frozen=True)
class TrainingInfo:
    """Provenance written to ``meta.json`` next to the weights."""

    created_at: str
    trainer: dict[str, Any]
    cv_scores: dict[str, float]
    train_rows: int
    data_sha256: str
    fit_seconds: float = 0.0


def rbf_kernel(
    a: FloatMatrix, b: FloatMatrix, gamma: float, b_sq_norms: FloatVector | None = None
) -> FloatMatrix:
    """``exp(-gamma·‖a_i − b_j‖²)`` as float32, computed in place to keep n × n kernels affordable."""
    b_sq = b_sq_norms if b_sq_norms is not None else np.einsum("ij,ij->i", b, b)
    k: FloatMatrix = a @ b.T
    k *= 2.0
    k -= np.einsum("ij,ij->i", a, a)[:, None]
    k -= b_sq[None, :]
    np.minimum(k, 0.0, out=k)  # rounding can make a squared distance slightly negative
    k *= gamma
    np.exp(k, out=k)
    return k


def softmax(scores: FloatMatrix, temperature: float) -> FloatMatrix:
    z = scores / np.float32(temperature)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def expected_calibration_error(probs: FloatMatrix, truth: IndexArray, bins: int = ECE_BINS) -> float:
    """ECE of the max probability over ``bins`` equal-width bins (first bin closed at 0)."""
    confidence = probs.max(axis=1).astype(np.float64)
    correct = (probs.argmax(axis=1) == truth).astype(np.float64)
    which = np.clip(np.ceil(confidence * bins).astype(np.intp) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += float(mask.mean()) * abs(float(correct[mask].mean()) - float(confidence[mask].mean()))
    return total


def _log_loss(scores: FloatMatrix, truth: IndexArray, inverse_t: float) -> float:
    z = scores.astype(np.float64) * inverse_t
    z -= z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(truth)), truth]))


def fit_temperature(scores: FloatMatrix, truth: IndexArray) -> float:
    """The temperature minimising log loss (convex in 1/T): golden-section search on log(1/T)."""
    lo, hi = math.log(1e-2), math.log(1e4)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(80):
        m1, m2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if _log_loss(scores, truth, math.exp(m1)) <= _log_loss(scores, truth, math.exp(m2)):
            hi = m2
        else:
            lo = m1
    return 1.0 / math.exp((lo + hi) / 2.0)


def _as_matrix(embeddings: npt.ArrayLike, dimensions: int | None = None) -> FloatMatrix:
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D (rows, dimensions) array, got shape {x.shape}")
    if dimensions is not None and x.shape[1] != dimensions:
        raise ValueError(f"expected {dimensions}-dimensional embeddings, got {x.shape[1]}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or infinity")
    return x


class KernelHead:
    """Calibrated intent classifier; immutable after construction and safe to share between threads."""

    def __init__(
        self,
        labels: Sequence[str],
        support: FloatMatrix,
        dual: FloatMatrix,
        offset: FloatVector,
        *,
        gamma: float,
        temperature: float,
        info: TrainingInfo | None = None,
    ) -> None:
        self.labels: tuple[str, ...] = tuple(labels)
        n, c = len(support), len(self.labels)
        if support.ndim != 2 or dual.shape != (n, c) or offset.shape != (c,):
            raise ValueError(
                f"inconsistent weights: support {support.shape}, dual {dual.shape}, "
                f"offset {offset.shape}, {c} labels"
            )
        if not (gamma > 0 and temperature > 0):
            raise ValueError("gamma and temperature must be positive")
        self._support = np.ascontiguousarray(support, dtype=np.float32)
        self._support_sq = np.einsum("ij,ij->i", self._support, self._support)
        self._dual = np.ascontiguousarray(dual, dtype=np.float32)
        self._offset = np.ascontiguousarray(offset, dtype=np.float32)
        self.gamma = float(gamma)
        self.temperature = float(temperature)
        self.info = info or TrainingInfo(_now(), {}, {}, n, "")

    @property
    def dimensions(self) -> int:
        return int(self._support.shape[1])

    def scores(self, embeddings: npt.ArrayLike) -> FloatMatrix:
        """Uncalibrated kernel-ridge scores, one column per label."""
        x = _as_matrix(embeddings, self.dimensions)
        out = np.empty((len(x), len(self.labels)), dtype=np.float32)
        for start in range(0, len(x), _PREDICT_CHUNK):
            chunk = x[start : start + _PREDICT_CHUNK]
            k = rbf_kernel(chunk, self._support, self.gamma, self._support_sq)
            out[start : start + len(chunk)] = k @ self._dual + self._offset
        return out

    def predict_proba(self, embeddings: npt.ArrayLike) -> FloatMatrix:
        """Calibrated probabilities, shape (rows, len(labels)); each row sums to 1."""
        return softmax(self.scores(embeddings), self.temperature)

    def predict(self, embeddings: npt.ArrayLike) -> list[Prediction]:
        probs = self.predict_proba(embeddings)
        k = min(TOP_K, len(self.labels))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        results = []
        for row, idx in zip(probs, order, strict=True):
            top = tuple((self.labels[i], float(row[i])) for i in idx)
            results.append(Prediction(label=top[0][0], confidence=top[0][1], top=top))
        return results

    # -- persistence ----------------------------------------------------------------------------

    def meta(self, version: str) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "version": version,
            "created_at": self.info.created_at,
            "labels": list(self.labels),
            "dimensions": self.dimensions,
            "gamma": self.gamma,
            "temperature": self.temperature,
            "trainer": self.info.trainer,
            "cv_scores": self.info.cv_scores,
            "train_rows": self.info.train_rows,
            "data_sha256": self.info.data_sha256,
            "fit_seconds": self.info.fit_seconds,
        }

    def save(self, directory: Path) -> None:
        """Write ``weights.npz`` then ``meta.json`` into a temp dir and rename it to ``directory``.

        Raises :class:`FileExistsError` if ``directory`` exists: artifacts are never overwritten.
        """
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            weights = tmp / WEIGHTS_FILE
            np.savez(weights, support=self._support, dual=self._dual, offset=self._offset)
            meta = self.meta(directory.name)
            meta["weights_sha256"] = _file_sha256(weights)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> KernelHead:
        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{directory}: unsupported artifact {meta.get('format')!r} v{meta.get('format_version')!r}"
            )
        weights = directory / WEIGHTS_FILE
        if _file_sha256(weights) != meta["weights_sha256"]:
            raise ValueError(f"{weights}: checksum does not match meta.json (corrupt or modified)")
        with np.load(weights, allow_pickle=False) as data:
            support, dual, offset = data["support"], data["dual"], data["offset"]
        info = TrainingInfo(
            created_at=meta["created_at"],
            trainer=meta["trainer"],
            cv_scores=meta["cv_scores"],
            train_rows=meta["train_rows"],
            data_sha256=meta["data_sha256"],
            fit_seconds=meta.get("fit_seconds", 0.0),
        )
        return cls(
            meta["labels"],
            support,
            dual,
            offset,
            gamma=meta["gamma"],
            temperature=meta["temperature"],
            info=info,
        )


LinearHead = KernelHead
"""Former name, kept for callers: the head is linear in the RBF kernel features."""


# -- training -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _KernelRidge:
    support: FloatMatrix
    dual: FloatMatrix
    offset: FloatVector
    gamma: float
    support_sq: FloatVector = field(repr=False)

    def scores(self, x: FloatMatrix) -> FloatMatrix:
        k = rbf_kernel(x, self.support, self.gamma, self.support_sq)
        out: FloatMatrix = k @ self.dual + self.offset
        return out


def _fit_kernel_ridge(
    x: FloatMatrix, y: IndexArray, n_classes: int, gamma: float, ridge: float
) -> _KernelRidge:
    """Solve (K + ridge·I)·A = onehot(y) − class frequencies; the frequencies become the offset."""
    onehot = np.zeros((len(y), n_classes), dtype=np.float32)
    onehot[np.arange(len(y)), y] = 1.0
    offset = onehot.mean(axis=0)
    onehot -= offset
    k = rbf_kernel(x, x, gamma)
    k[np.diag_indices_from(k)] += np.float32(ridge)
    # k is symmetric, so its transpose is the same matrix in Fortran order: LAPACK can factor it in place.
    dual = scipy.linalg.solve(k.T, onehot, assume_a="pos", overwrite_a=True, check_finite=False)
    del k
    return _KernelRidge(x, np.asarray(dual, dtype=np.float32), offset, gamma, np.einsum("ij,ij->i", x, x))


def _cross_validate(
    x: FloatMatrix, y: IndexArray, n_classes: int, *, folds: int, seed: int, gamma: float, ridge: float
) -> tuple[FloatMatrix, list[IndexArray]]:
    """Out-of-fold scores for every row, and the held-out indices of each fold."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    oof = np.zeros((len(y), n_classes), dtype=np.float32)
    held_out: list[IndexArray] = []
    for train_idx, valid_idx in splitter.split(x, y):
        model = _fit_kernel_ridge(x[train_idx], y[train_idx], n_classes, gamma, ridge)
        oof[valid_idx] = model.scores(x[valid_idx])
        held_out.append(valid_idx)
    return oof, held_out


def _cv_metrics(oof: FloatMatrix, y: IndexArray, held_out: list[IndexArray]) -> dict[str, float]:
    """Accuracy and macro-F1 of the out-of-fold argmax; cross-fitted ECE of the calibrated max-prob."""
    probs = np.zeros_like(oof)
    everything = np.ones(len(y), dtype=bool)
    for valid_idx in held_out:
        rest = everything.copy()
        rest[valid_idx] = False
        probs[valid_idx] = softmax(oof[valid_idx], fit_temperature(oof[rest], y[rest]))
    predicted = oof.argmax(axis=1)
    return {
        "accuracy": float(np.mean(predicted == y)),
        "macro_f1": float(f1_score(y, predicted, average="macro")),
        "ece": expected_calibration_error(probs, y),
    }


def train_head(
    embeddings: npt.ArrayLike,
    labels: Sequence[str],
    *,
    seed: int = 0,
    gamma: float = GAMMA,
    ridge: float = RIDGE,
    folds: int = FOLDS,
) -> tuple[KernelHead, dict[str, float]]:
    """Fit the head on all rows; return it with k-fold CV scores (accuracy, macro_f1, ece) on these rows.

    ``seed`` only shuffles the folds (the fit itself is deterministic). The CV out-of-fold scores also
    fit the softmax temperature of the returned head.
    """
    started = time.perf_counter()
    x = _as_matrix(embeddings)
    if len(labels) != len(x):
        raise ValueError(f"{len(x)} embeddings but {len(labels)} labels")
    if not folds <= len(x) <= MAX_TRAIN_ROWS:
        raise ValueError(f"need between {folds} and {MAX_TRAIN_ROWS} rows to train, got {len(x)}")
    names, y = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    if len(names) < 2:
        raise ValueError("need at least two distinct labels")
    y = y.astype(np.intp)
    oof, held_out = _cross_validate(x, y, len(names), folds=folds, seed=seed, gamma=gamma, ridge=ridge)
    scores = _cv_metrics(oof, y, held_out)
    temperature = fit_temperature(oof, y)
    model = _fit_kernel_ridge(x, y, len(names), gamma, ridge)
    trainer = {
        "algorithm": KIND,
        "gamma": gamma,
        "ridge": ridge,
        "folds": folds,
        "seed": seed,
        "calibration": "temperature minimising log loss on out-of-fold scores",
    }
    info = TrainingInfo(
        created_at=_now(),
        trainer=trainer,
        cv_scores=scores,
        train_rows=len(x),
        data_sha256=_data_sha256(x, [str(v) for v in labels]),
        fit_seconds=round(time.perf_counter() - started, 3),
    )
    head = KernelHead(
        [str(n) for n in names],
        model.support,
        model.dual,
        model.offset,
        gamma=gamma,
        temperature=temperature,
        info=info,
    )
    return head, scores


# -- helpers --------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _data_sha256(x: FloatMatrix, labels: Sequence[str]) -> str:
    """sha256 of the float32 C-order embedding bytes followed by the labels, newline-joined (UTF-8)."""
    digest = hashlib.sha256(x.tobytes())
    digest.update("\n".join(labels).encode("utf-8"))
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
