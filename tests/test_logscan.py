"""The log detector the suite's log output goes through (tests/logscan.py): planted personal
data and secrets are caught, ordinary ids, amounts and timestamps are not."""

from __future__ import annotations

import logging

import pytest

from tests import logscan
from tests.logscan import Finding, findings, iban_valid, luhn_valid


@pytest.mark.parametrize(
    "line, expected",
    [
        ("mail sent to ada.lovelace+ops@northwind.example",
         Finding("email", "ada.lovelace+ops@northwind.example")),
        ("card 4242424242424242 declined", Finding("card", "4242424242424242")),
        ("card 4242 4242 4242 4242 declined", Finding("card", "4242 4242 4242 4242")),
        ("amex 3782-822463-10005", Finding("card", "3782-822463-10005")),
        ("pay to GB82 WEST 1234 5698 7654 32 now", Finding("iban", "GB82 WEST 1234 5698 7654 32")),
        ("iban=DE89370400440532013000", Finding("iban", "DE89370400440532013000")),
        ("key sk_test_4eC39HqLyjWDarjtT1zdp7dc used",
         Finding("key", "sk_test_4eC39HqLyjWDarjtT1zdp7dc")),
        ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
         Finding("key", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
    ],
)  # fmt: skip
def test_planted_personal_data_and_keys_are_caught(line, expected):
    # when
    found = findings(line)
    # then
    assert found == [expected]


def test_a_configured_secret_is_caught_wherever_it_appears():
    # when
    found = findings("signature used s3cr3t-webhook-value!", secrets={"s3cr3t-webhook-value"})
    # then
    assert found == [Finding("secret", "s3cr3t-webhook-value")]


@pytest.mark.parametrize(
    "line",
    [
        "event cpq:evt_01HV3K9Q2W quote.approved processed (ENT-000123)",
        "order ORD-2026-000042 submitted, amount 1234567.89 EUR",
        "took 1765132736123 ms since epoch 1765132736",  # 13 digits, Luhn-valid, no card prefix
        "uuid 8f14e45f-ceea-467f-a0b2-6b1c2f5b8e7a, sha 2a9937b4c1d0e8f7a6b5c4d3e2f1a0b9c8d7e6f5",
        "POST /v1/customers/cus_Q2w3E4r5T6y7 -> 200",
        "4242424242424241 fails Luhn",
        "tandem@localhost is the sender",
        "GB82WEST12345698765433 fails mod 97",
    ],
)
def test_ordinary_ids_amounts_and_timestamps_are_not_findings(line):
    # when
    found = findings(line)
    # then
    assert found == []


def test_luhn_and_mod97_checks():
    # then
    assert (luhn_valid("79927398713"), luhn_valid("79927398710")) == (True, False)
    assert (iban_valid("GB82WEST12345698765432"), iban_valid("GB82WEST12345698765431")) == (
        True, False,
    )  # fmt: skip


def test_a_logged_record_is_attributed_to_the_running_test(request):
    # given
    before = len(logscan._scanner.leaks)
    # when
    logscan._handler.handle(
        logging.makeLogRecord({"name": "tandem.probe", "msg": "to %s", "args": ("ada@x.example",)})
    )
    planted = logscan._scanner.leaks[before:]
    del logscan._scanner.leaks[before:]  # planted here: must not fail this test
    # then
    assert [(leak.test, leak.source, leak.line, leak.finding.kind) for leak in planted] == [
        (request.node.nodeid, "tandem.probe", "to ada@x.example", "email")
    ]


def test_a_watched_log_file_is_scanned_as_it_grows(tmp_path, request):
    # given
    log = tmp_path / "worker.log"
    log.write_text("ready\nsent to bob@y.example\nhalf a li")
    before = len(logscan._scanner.leaks)
    logscan.watch_file(log)
    # when
    logscan._scanner.scan_files()
    with log.open("a") as stream:
        stream.write("ne with card 4111111111111111\n")
    logscan._scanner.scan_files()
    planted = logscan._scanner.leaks[before:]
    del logscan._scanner.leaks[before:]
    # then
    assert [(leak.source, leak.finding.value) for leak in planted] == [
        ("worker.log", "bob@y.example"), ("worker.log", "4111111111111111"),
    ]  # fmt: skip
    assert {leak.test for leak in planted} == {request.node.nodeid}
