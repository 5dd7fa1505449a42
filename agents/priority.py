"""Ticket priority from the predicted intent plus urgency cues in the text.

Deterministic rules rather than a model: BANKING77 carries no priority labels, and an operator must
be able to say exactly why a ticket was marked urgent.
"""

from __future__ import annotations

import re

URGENT_INTENTS = frozenset(
    {
        "compromised_card",
        "lost_or_stolen_card",
        "lost_or_stolen_phone",
        "card_swallowed",
        "cash_withdrawal_not_recognised",
        "card_payment_not_recognised",
        "direct_debit_payment_not_recognised",
    }
)
HIGH_INTENTS = frozenset(
    {
        "transaction_charged_twice",
        "wrong_amount_of_cash_received",
        "declined_card_payment",
        "declined_cash_withdrawal",
        "declined_transfer",
        "failed_transfer",
        "card_not_working",
        "request_refund",
        "reverted_card_payment?",
        "balance_not_updated_after_bank_transfer",
        "balance_not_updated_after_cheque_or_cash_deposit",
        "pending_cash_withdrawal",
        "pending_transfer",
        "pending_card_payment",
        "transfer_not_received_by_recipient",
        "cash_withdrawal_charge",
        "extra_charge_on_statement",
        "wrong_exchange_rate_for_cash_withdrawal",
        "passcode_forgotten",
        "pin_blocked",
        "unable_to_verify_identity",
    }
)
LOW_INTENTS = frozenset(
    {
        "supported_cards_and_currencies",
        "fiat_currency_support",
        "country_support",
        "age_limit",
        "getting_virtual_card",
        "getting_spare_card",
        "order_physical_card",
        "card_delivery_estimate",
        "exchange_rate",
        "exchange_via_app",
        "visa_or_mastercard",
        "disposable_card_limits",
        "top_up_limits",
        "apple_pay_or_google_pay",
        "card_acceptance",
        "atm_support",
        "receiving_money",
        "edit_personal_details",
        "change_pin",
        "get_physical_card",
        "terminate_account",
    }
)
LEVELS = ("low", "normal", "high", "urgent")
URGENCY_CUES = re.compile(
    r"\b(urgent(?:ly)?|asap|immediately|right now|emergency|fraud(?:ulent)?|stolen|hacked|scam(?:med)?)\b",
    re.IGNORECASE,
)


def priority_for(intent: str, text: str) -> str:
    if intent in URGENT_INTENTS:
        level = 3
    elif intent in HIGH_INTENTS:
        level = 2
    elif intent in LOW_INTENTS:
        level = 0
    else:
        level = 1
    if URGENCY_CUES.search(text):
        level = min(level + 1, 3)
    return LEVELS[level]
