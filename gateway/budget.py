"""Per-tenant spend budgets per period, enforced by reservation.

Before a call, its worst-case cost (every prompt byte a token, every allowed output token used) is
reserved against the tenant's budget; after it, the reservation is replaced by the actual cost. The
check and the reservation happen in one synchronous step on the event loop, so any number of
concurrent calls can never together commit more than the budget: spend can exceed it only if a
provider bills more than the worst case the route allows.

The ledger lives in the worker's memory: with several worker processes, give each its share of a
tenant's budget (or run budgeted tenants on one worker). Spend of an unknown-priced model is counted
at its reservation, the conservative side.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from gateway.errors import BudgetExceeded
from gateway.policy import BudgetConfig


@dataclass
class Reservation:
    tenant: str
    period: str
    amount: Decimal
    settled: bool = False


class BudgetLedger:
    def __init__(self, config: BudgetConfig, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self._now = now
        self._committed: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
        """Spent plus reserved, per (tenant, period)."""

    def limit(self, tenant: str) -> Decimal | None:
        return self.config.tenants.get(tenant, self.config.default_usd)

    def period(self) -> str:
        now = self._now()
        return now.strftime("%Y-%m-%d" if self.config.period == "day" else "%Y-%m")

    def committed(self, tenant: str) -> Decimal:
        return self._committed[(tenant, self.period())]

    def reserve(self, tenant: str, amount: Decimal, task: str) -> Reservation:
        period = self.period()
        limit = self.limit(tenant)
        key = (tenant, period)
        if limit is not None and self._committed[key] + amount > limit:
            raise BudgetExceeded(task, tenant, needed=amount, remaining=limit - self._committed[key])
        self._committed[key] += amount
        return Reservation(tenant, period, amount)

    def settle(self, reservation: Reservation, actual: Decimal | None) -> None:
        """Replace the reservation by the actual cost (``None``: price unknown, keep the reservation)."""
        if reservation.settled:
            return
        reservation.settled = True
        if actual is not None:
            self._committed[(reservation.tenant, reservation.period)] += actual - reservation.amount
