"""Cost from a versioned price table kept in the repo, as Decimal; never fetched at run time.

An unknown model is priced as ``None`` (unknown) with a loud warning, never as zero: a silent zero
hides spend exactly where nobody has looked yet.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import structlog

PRICE_FILE = Path(__file__).with_name("prices.toml")
PER_TOKENS = Decimal(1_000_000)
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ModelPrice:
    input: Decimal
    output: Decimal


@dataclass(frozen=True)
class PriceTable:
    version: str
    models: dict[str, ModelPrice]

    def cost(self, model_key: str, input_tokens: int, output_tokens: int) -> Decimal | None:
        price = self.models.get(model_key)
        if price is None:
            log.warning("price_unknown", model=model_key, price_version=self.version)
            return None
        return (price.input * input_tokens + price.output * output_tokens) / PER_TOKENS


def load_prices(path: Path = PRICE_FILE) -> PriceTable:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    models = {
        key: ModelPrice(Decimal(str(v["input"])), Decimal(str(v.get("output", "0"))))
        for key, v in raw.get("models", {}).items()
    }
    return PriceTable(version=str(raw["version"]), models=models)
