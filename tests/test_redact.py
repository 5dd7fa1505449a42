"""PII masking: what is masked, what is deliberately left alone, and that counts add up."""

from __future__ import annotations

import pytest

from gateway.redact import Redactor, iban_ok, luhn_ok


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("write to jane.roe+bank@mail.example.org today", "EMAIL"),
        ("card 4111 1111 1111 1111 was charged", "CARD"),
        ("card 5500-0000-0000-0004 was charged", "CARD"),
        ("number 378282246310005 please", "CARD"),
        ("IBAN GB82 WEST 1234 5698 7654 32 for the refund", "IBAN"),
        ("to DE89370400440532013000 now", "IBAN"),
        ("login from 203.0.113.77 failed", "IP"),
        ("login from 2001:db8:85a3::8a2e:370:7334 failed", "IP"),
        ("call me on +44 20 7946 0958 tomorrow", "PHONE"),
        ("call (555) 123-4567 after 5", "PHONE"),
        ("paid on 2024-03-05 4111111111111111 ok", "CARD"),
    ],
)
def test_each_kind_is_masked_and_counted(text: str, kind: str) -> None:
    masked, counts = Redactor(memo_size=0).redact(text)
    assert f"[{kind}]" in masked
    assert counts[kind] == 1 and sum(counts.values()) == 1


@pytest.mark.parametrize(
    "text",
    [
        "order 1234 5678 9012 3456 is late",  # 16 digits failing Luhn: an order number
        "ticket 12345678 opened 2024-03-05 at 10:30",
        "amount 1,234,567.89 USD",
        "version 1.2.3 of the app",
    ],
)
def test_lookalikes_are_left_alone(text: str) -> None:
    masked, counts = Redactor(memo_size=0).redact(text)
    assert masked == text and not counts


def test_a_bad_checksum_iban_is_not_called_an_iban() -> None:
    # its digit run may still be masked as a phone number: over-masking is the safe side
    masked, counts = Redactor(memo_size=0).redact("GB00 WEST 1234 5698 7654 32")
    assert "[IBAN]" not in masked and counts["IBAN"] == 0


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB83WEST12345698765432")


def test_configured_patterns_and_preview_truncation() -> None:
    redactor = Redactor({"employee_id": r"EMP-\d{6}"})
    text = "EMP-123456 wrote from bob@example.com; " + "x" * 1000
    preview, masked = redactor.preview(text, limit=40)
    assert preview.startswith("[EMPLOYEE_ID] wrote from [EMAIL];")
    assert len(preview) == 40 and masked == 2
    assert "bob@example.com" not in preview


def test_a_value_cut_by_the_preview_limit_is_masked_whole_first() -> None:
    text = "y" * 30 + " jane@example.com"
    preview, _ = Redactor().preview(text, limit=40)
    assert "jane@" not in preview and preview.startswith("y" * 30)
