"""A pytest plugin: no personal data or secret in the suite's log output.

Every log record any logger emits during the run (in this process: a handler on the root
logger and on every logger that does not propagate; in worker subprocesses: their log files,
named with ``watch_file``) goes through ``findings``, a detector of e-mail addresses, card
numbers (13 to 19 digits, Luhn-valid, with a card network's prefix), IBANs (mod-97 valid) and
secrets (``sk_``/``rk_``/``whsec_`` keys and the values of secret settings and environment
variables). The session fails if anything is found, naming the test, the logger and the
line. Records are scanned as they are emitted, one compiled pattern per record, so the cost
is a few microseconds a line.

Loaded with ``-p tests.logscan`` (pyproject's addopts).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

_EMAIL = r"(?P<email>[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})"
# 13 to 19 digits, optionally in groups split by one space or hyphen, not inside a longer run.
_CARD = r"(?P<card>(?<![\w.])\d(?:[ -]?\d){12,18}(?![\w]))"
_IBAN = (
    r"(?P<iban>(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?"
    r"(?![A-Za-z0-9]))"
)
_KEY = (
    r"(?P<key>(?<![A-Za-z0-9])(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{8,}|whsec_[A-Za-z0-9+/=]{8,})"
)
# One pattern per cheap guard: most lines have no "@" and no key prefix, and a digit run
# long enough for a card or an account number is found by a plain character-class scan.
_EMAIL_PATTERN = re.compile(_EMAIL)
_KEY_PATTERN = re.compile(_KEY)
_CARD_PATTERN = re.compile(_CARD)
_IBAN_PATTERN = re.compile(_IBAN)
_LONG_NUMBER = re.compile(r"[0-9][0-9 -]{11,}[0-9]")
_IBAN_START = re.compile(r"[A-Z]{2}[0-9]{2}")
_KEY_PREFIXES = ("sk_", "rk_", "pk_", "whsec_")

# Issuer prefixes of the card networks (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay,
# Maestro): a Luhn check alone passes one digit run in ten (epoch milliseconds, big ids).
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|6(?:011|5|4[4-9]|2)|35|3[068]|5[06-9])")
# Environment variables and settings whose values are secrets.
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|API_KEY|TOKEN|PASSFILE|CREDENTIAL", re.IGNORECASE)
# Shorter values would match ordinary words; test secrets are longer than this.
_SECRET_MIN_LEN = 8


@dataclass(frozen=True)
class Finding:
    kind: str  # email, card, iban, key or secret
    value: str

    def masked(self) -> str:
        keep = self.value[:4]
        return f"{keep}…({len(self.value)} chars)"


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


def findings(text: str, *, secrets: Iterable[str] = ()) -> list[Finding]:
    """Personal data and secrets in ``text``: e-mails, cards, IBANs, API/signing keys, and any
    of ``secrets`` (exact values) appearing in it."""
    found: list[Finding] = []
    patterns = []
    if "@" in text:
        patterns.append(_EMAIL_PATTERN)
    if _LONG_NUMBER.search(text):
        patterns.append(_CARD_PATTERN)
    if _IBAN_START.search(text):
        patterns.append(_IBAN_PATTERN)
    if any(prefix in text for prefix in _KEY_PREFIXES):
        patterns.append(_KEY_PATTERN)
    matches = [match for pattern in patterns for match in pattern.finditer(text)]
    for match in sorted(matches, key=lambda match: match.start()):
        kind = match.lastgroup or ""
        value = match.group()
        if kind == "card":
            digits = re.sub(r"[ -]", "", value)
            if not (_CARD_PREFIX.match(digits) and luhn_valid(digits)):
                continue
        elif kind == "iban" and not iban_valid(value):
            continue
        found.append(Finding(kind=kind, value=value))
    found.extend(Finding(kind="secret", value=secret) for secret in secrets if secret in text)
    return found


def secret_values(environ: dict[str, str], settings: Any = None) -> frozenset[str]:
    """The values of secret-named environment variables and settings (long enough to be
    unambiguous)."""
    values = {value for name, value in environ.items() if _SECRET_NAME.search(name)}
    if settings is not None:
        for name in dir(settings):
            if name.isupper() and _SECRET_NAME.search(name):
                value = getattr(settings, name, None)
                if isinstance(value, str):
                    values.add(value)
    return frozenset(value for value in values if len(value) >= _SECRET_MIN_LEN)


@dataclass(frozen=True)
class Leak:
    test: str
    source: str  # the logger's name, or the log file's
    line: str
    finding: Finding


class _Scanner:
    def __init__(self) -> None:
        self.test = "(outside any test)"
        self.leaks: list[Leak] = []
        self.settings_secrets: frozenset[str] = frozenset()
        self._env_len = -1
        self._env_names: list[str] = []
        self._env_values: tuple[str, ...] = ()
        self._env_secrets: frozenset[str] = frozenset()
        self._files: dict[Path, int] = {}

    def secrets(self) -> frozenset[str]:
        # Tests set secrets in the environment (monkeypatch): re-read the secret-named
        # variables' values on each record, their names only when the environment grew or shrank.
        if len(os.environ) != self._env_len:
            self._env_len = len(os.environ)
            self._env_names = [name for name in os.environ if _SECRET_NAME.search(name)]
        values = tuple(os.environ.get(name, "") for name in self._env_names)
        if values != self._env_values:
            self._env_values = values
            self._env_secrets = frozenset(v for v in values if len(v) >= _SECRET_MIN_LEN)
        return self.settings_secrets | self._env_secrets

    def scan(self, source: str, line: str) -> None:
        for finding in findings(line, secrets=self.secrets()):
            self.leaks.append(Leak(test=self.test, source=source, line=line, finding=finding))

    def watch(self, path: Path) -> None:
        self._files.setdefault(path, 0)

    def scan_files(self) -> None:
        for path, offset in list(self._files.items()):
            try:
                with path.open("rb") as stream:
                    stream.seek(offset)
                    chunk = stream.read()
            except FileNotFoundError:
                continue
            end = chunk.rfind(b"\n") + 1  # a half-written last line waits for the next scan
            self._files[path] = offset + end
            for line in chunk[:end].decode("utf-8", errors="replace").splitlines():
                self.scan(path.name, line)


_scanner = _Scanner()


def watch_file(path: Path) -> None:
    """Scan the log file of a process the test started (a Celery worker) as it grows."""
    _scanner.watch(path)


class _ScanHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                line += "\n" + self._formatter.formatException(record.exc_info)
            elif record.exc_text:
                line += "\n" + record.exc_text
        except Exception:  # a broken record is its test's problem, not the scanner's
            return
        _scanner.scan(record.name, line)


_handler = _ScanHandler()
_known_loggers = -1


def _attach() -> None:
    """Keep the handler on the root logger (a dictConfig may have replaced its handlers) and
    on every logger that does not propagate to it."""
    global _known_loggers
    root = logging.getLogger()
    if _handler not in root.handlers:
        root.addHandler(_handler)
    loggers = logging.Logger.manager.loggerDict
    if len(loggers) == _known_loggers:
        return
    _known_loggers = len(loggers)
    for logger in list(loggers.values()):
        if (
            isinstance(logger, logging.Logger)
            and not logger.propagate
            and _handler not in logger.handlers
        ):
            logger.addHandler(_handler)


def pytest_sessionstart(session: pytest.Session) -> None:
    from django.conf import settings

    _scanner.settings_secrets = secret_values({}, settings)
    _attach()


def _describe(leak: Leak) -> str:
    lines = leak.line.splitlines() or [""]
    line = next((part for part in lines if leak.finding.value in part), lines[0])
    shown = line.replace(leak.finding.value, f"<{leak.finding.kind} {leak.finding.masked()}>")
    return f"{leak.test}: [{leak.source}] {shown[:300]}"


_first_leak_of_test = 0


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    global _first_leak_of_test
    _scanner.scan_files()  # what a worker wrote between tests is the previous test's
    _scanner.test = nodeid
    _first_leak_of_test = len(_scanner.leaks)
    _attach()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    """A test whose run logged personal data or a secret fails in its teardown, naming the
    line (so the failure is reported by whichever process ran the test, xdist included)."""
    outcome = yield
    if call.when != "teardown":
        return
    _scanner.scan_files()
    leaks = _scanner.leaks[_first_leak_of_test:]
    if not leaks:
        return
    report = outcome.get_result()
    report.outcome = "failed"
    report.longrepr = "personal data or a secret in the log output:\n" + "\n".join(
        _describe(leak) for leak in leaks[:50]
    )


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    _scanner.test = "(between tests)"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # What was logged outside any test (session fixtures' teardown) fails the session.
    _scanner.scan_files()
    outside = any("::" not in leak.test for leak in _scanner.leaks)
    if outside and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    outside = [leak for leak in _scanner.leaks if "::" not in leak.test]
    if not outside:
        return
    terminalreporter.section("personal data or secrets logged outside any test", red=True)
    for leak in outside[:200]:
        terminalreporter.write_line(_describe(leak))
