"""Build the Tryton database the real-system tests run against, and save it gzipped.

Run with the Tryton virtualenv's python (``make tryton-db``), never Tandem's:

    var/tryton-venv/bin/python scripts/tryton_setup.py [--output tests/realsystems/tryton]

It creates a SQLite database with the modules sale, sale_subscription and account_invoice
(and their dependencies), then through proteus and Tryton's own test helpers: two companies
(GBP; company 1 "Tandem Holdings Ltd", company 2 "Tandem Demo Ltd", the test catalog's legal
entity, whose ``erp_subsidiary`` is ``2``) with USD and EUR rates, each with a chart of
accounts, fiscal years for last, this and next year with invoice sequences and periods, a
20% sales tax and a ``Tandem receipts`` payment method on its cash journal; a direct payment
term, an account category for Tandem's products (``Tandem services``, with each company's
revenue account and tax) and the connector user ``tandem`` with every group but
Administration (it needs Account Product Administration to set account categories), both
companies, company 1 current and records of all its companies shown. The result is
written as ``tryton.sqlite.gz`` beside a stamp with the versions and the hashes of
requirements-tryton.txt and of this script; the tests rebuild the database when either
changed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import importlib.metadata
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements-tryton.txt"
DATABASE_NAME = "tandem"
ADMIN_PASSWORD = "admin-test-only"  # noqa: S105 (a throw-away test database)
CONNECTOR_LOGIN = "tandem"
CONNECTOR_PASSWORD = "tandem-test-only"  # noqa: S105
COMPANY_CURRENCY = "GBP"
# (party code, name): company 1 is the connector user's current one; 2 the test legal entity's
COMPANIES = [("TANDEM-HOLDINGS", "Tandem Holdings Ltd"), ("TANDEM-DEMO", "Tandem Demo Ltd")]
PAYMENT_METHOD = "Tandem receipts"
MODULES = ["sale", "sale_subscription", "account_invoice"]
PACKAGES = [
    "trytond", "trytond-account", "trytond-account-invoice", "trytond-company",
    "trytond-currency", "trytond-party", "trytond-product", "trytond-sale",
    "trytond-sale-subscription", "proteus",
]  # fmt: skip


def requirements_hash() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def config_write(directory: Path) -> Path:
    conf = directory / "trytond.conf"
    conf.write_text(
        f"[database]\nuri = sqlite://\npath = {directory}\n\n[session]\ntimeout = 3600\n"
    )
    return conf


def database_create(directory: Path, conf: Path) -> None:
    (directory / f"{DATABASE_NAME}.sqlite").touch()
    password_file = directory / "admin-password"
    password_file.write_text(ADMIN_PASSWORD)
    admin = Path(sys.executable).parent / "trytond-admin"
    subprocess.run(  # noqa: S603 (fixed argument list)
        [str(admin), "-c", str(conf), "-d", DATABASE_NAME, "--email", "admin@example.invalid",
         "-u", *MODULES, "--activate-dependencies"],
        check=True,
        env={**os.environ, "TRYTONPASSFILE": str(password_file)},
    )  # fmt: skip


def data_create(conf: Path) -> None:
    from proteus import Model, config
    from trytond.modules.account.tests.tools import (
        create_chart,
        create_fiscalyear,
        create_tax,
        get_accounts,
    )
    from trytond.modules.account_invoice.tests.tools import (
        create_payment_term,
        set_fiscalyear_invoice_sequences,
    )
    from trytond.modules.company.tests.tools import create_company

    proteus_config = config.set_trytond(DATABASE_NAME, config_file=str(conf))
    Currency = Model.get("currency.currency")
    Rate = Model.get("currency.currency.rate")
    for code, name, symbol, rate in (
        ("GBP", "Pound Sterling", "£", Decimal("1")),
        ("USD", "US Dollar", "$", Decimal("1.27")),
        ("EUR", "Euro", "€", Decimal("1.17")),
    ):
        currency = Currency(name=name, symbol=symbol, code=code, rounding=Decimal("0.01"))
        currency.save()
        Rate(date=dt.date(2000, 1, 1), rate=rate, currency=currency).save()

    Party = Model.get("party.party")
    gbp = Currency.find([("code", "=", "GBP")])[0]
    companies = []
    for code, name in COMPANIES:
        company_party = Party(name=name, code=code)
        company_party.save()
        create_company(party=company_party, currency=gbp)
        companies.append(Model.get("company.company").find([("party", "=", company_party.id)])[0])
    create_payment_term().save()

    Group = Model.get("res.group")
    User = Model.get("res.user")
    admin = User.find([("login", "=", "admin")])[0]
    admin.companies.extend(companies[1:])
    admin.company_filter = "all"  # the setup writes in both companies
    admin.save()
    Category = Model.get("product.category")
    Journal = Model.get("account.journal")
    PaymentMethod = Model.get("account.invoice.payment.method")
    category = None
    for company in companies:
        # Properties (revenue accounts, receivables) are per company: set them in its context.
        with proteus_config.set_context(company=company.id):
            company_setup(company, create_chart, create_fiscalyear, create_tax, get_accounts,
                          set_fiscalyear_invoice_sequences)  # fmt: skip
            accounts = get_accounts(company)
            tax = Model.get("account.tax").find(
                [("company", "=", company.id), ("name", "=", "VAT 20%")]
            )[0]
            if category is None:
                category = Category(name="Tandem services", accounting=True)
            else:
                category = Category(category.id)
            category.account_revenue = accounts["revenue"]
            category.account_expense = accounts["expense"]
            category.customer_taxes.append(tax)
            category.save()
            PaymentMethod(
                name=PAYMENT_METHOD, company=company,
                journal=Journal.find([("type", "=", "cash")])[0],
                credit_account=accounts["cash"], debit_account=accounts["cash"],
            ).save()  # fmt: skip

    user = User(name="Tandem connector", login=CONNECTOR_LOGIN, password=CONNECTOR_PASSWORD)
    user.groups.extend(Group.find([("name", "!=", "Administration")]))
    Company = Model.get("company.company")
    user.companies.extend([Company(company.id) for company in companies])
    user.company = Company(companies[0].id)
    user.company_filter = "all"  # a return or a credit note finds its sale in any company
    user.save()


def company_setup(
    company: Any, create_chart: Any, create_fiscalyear: Any, create_tax: Any,
    get_accounts: Any, set_fiscalyear_invoice_sequences: Any,
) -> None:  # fmt: skip
    """A company's chart of accounts, fiscal years (last, this and next) and 20% sales tax."""
    create_chart(company)
    today = dt.date.today()
    for year in (today.year - 1, today.year, today.year + 1):
        fiscalyear = set_fiscalyear_invoice_sequences(
            create_fiscalyear(company, (dt.date(year, 1, 1), dt.date(year, 12, 31)))
        )
        fiscalyear.save()
        fiscalyear.click("create_period")
    tax = create_tax(Decimal("0.20"), company)
    tax.name = tax.description = "VAT 20%"
    tax.save()


def versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in PACKAGES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "tests/realsystems/tryton")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tryton-setup-") as tmp:
        directory = Path(tmp)
        conf = config_write(directory)
        database_create(directory, conf)
        # proteus reads the configuration the way trytond does
        os.environ["TRYTOND_CONFIG"] = str(conf)
        data_create(conf)
        args.output.mkdir(parents=True, exist_ok=True)
        # A consistent, compact copy: what is still in the write-ahead log included.
        snapshot = directory / "snapshot.sqlite"
        with sqlite3.connect(directory / f"{DATABASE_NAME}.sqlite") as db:
            db.execute("VACUUM INTO ?", (str(snapshot),))
        # mtime=0: no build time in the gzip header
        with (
            snapshot.open("rb") as source,
            (args.output / "tryton.sqlite.gz").open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=raw, mtime=0) as target,
        ):
            shutil.copyfileobj(source, target)
    stamp = {
        "database": DATABASE_NAME,
        "requirements_sha256": requirements_hash(),
        "setup_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "versions": versions(),
        "modules": MODULES,
        "company_currency": COMPANY_CURRENCY,
        "companies": [name for _, name in COMPANIES],
        "payment_method": PAYMENT_METHOD,
        "connector_login": CONNECTOR_LOGIN,
        "built_on": dt.date.today().isoformat(),
    }
    (args.output / "stamp.json").write_text(json.dumps(stamp, indent=2) + "\n")
    print(f"saved {args.output / 'tryton.sqlite.gz'} in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
