"""Cost from a versioned price table kept in the repo, as Decimal; never fetched at run time.

An unknown model is priced as ``None`` (unknown) with a loud warning, never as zero: a silent zero
hides spend exactly where nobody has looked yet.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import structlog

PRICE_FILE = Path(__file__).with_name("prices.toml")
PER_TOKENS = Decimal(1_000_000)
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ModelPrice:
    """USD per 1M tokens. Cache prices default to the input price (no discount known)."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal


@dataclass(frozen=True)
class PriceTable:
    version: str
    models: dict[str, ModelPrice]
    _warned: set[str] = field(default_factory=set, compare=False, repr=False)

    def price(self, model_key: str) -> ModelPrice | None:
        """The model's own entry, else its provider's ``<provider>/*`` default, else None."""
        price = self.models.get(model_key) or self.models.get(f"{model_key.split('/', 1)[0]}/*")
        if price is None and model_key not in self._warned:
            # once per model and process: loud enough to be found, not a log line per call
            self._warned.add(model_key)
            log.warning("price_unknown", model=model_key, price_version=self.version, cost="reported as NULL")
        return price

    def cost(
        self,
        model_key: str,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> Decimal | None:
        """``input_tokens`` includes the cached ones; those are billed at their own prices."""
        price = self.price(model_key)
        if price is None:
            return None
        fresh = max(0, input_tokens - cache_read_tokens - cache_write_tokens)
        total = (
            price.input * fresh
            + price.cache_read * cache_read_tokens
            + price.cache_write * cache_write_tokens
            + price.output * output_tokens
        )
        return total / PER_TOKENS

    def worst_case(self, model_key: str, max_input_tokens: int, max_output_tokens: int) -> Decimal | None:
        """The most a call can cost: every input token billed fresh, every allowed output token used."""
        return self.cost(model_key, max_input_tokens, max_output_tokens)


def _decimal(raw: dict[str, object], key: str, default: Decimal) -> Decimal:
    value = raw.get(key)
    return default if value is None else Decimal(str(value))


def load_prices(path: Path = PRICE_FILE) -> PriceTable:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    models = {}
    for key, v in raw.get("models", {}).items():
        input_price = _decimal(v, "input", Decimal(0))
        models[key] = ModelPrice(
            input=input_price,
            output=_decimal(v, "output", Decimal(0)),
            cache_read=_decimal(v, "cache_read", input_price),
            cache_write=_decimal(v, "cache_write", input_price),
        )
    return PriceTable(version=str(raw["version"]), models=models)
