"""Identity resolution at ingest: normalized keys, and an ambiguity held for a steward."""

from __future__ import annotations

import pytest

from core.audit import Actor
from core.problems import Category
from exceptions.models import OperationalException
from masterdata.identity import domain_key, identity_resolve, name_key, tax_id_key
from masterdata.services import merges as md
from orchestration.workflows import (
    engine,
    quote_to_cash,  # noqa: F401  (registers the workflow)
)
from orchestration.workflows.models import StepRun, StepState
from q2c import services
from q2c.models import Order, OrderState
from tests import factories
from tests.masterdata import helpers


@pytest.mark.parametrize(
    ("raw", "country", "key"),
    [
        ("GB 123-456-789", "GB", "GB123456789"),
        ("gb123456789", "", "GB123456789"),
        ("123 456 789", "GB", "GB123456789"),
        ("DE 812.457.390", "DE", "DE812457390"),
        ("GR 094 259 216", "GR", "EL094259216"),
        ("094259216", "GR", "EL094259216"),
        ("CHE-123.456.789 MWST", "CH", "CHE123456789"),
        ("47-3816290", "US", "US473816290"),
        ("FR 40 303 265 045", "FR", "FR40303265045"),
    ],
)
def test_tax_ids_are_normalized_per_country(raw, country, key):
    assert tax_id_key(raw, country) == key


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("https://www.Acme.com/about", "acme.com"),
        ("ap@acme.co.uk", "acme.co.uk"),
        ("someone@gmail.com", ""),
        ("http://outlook.com", ""),
        ("acme.com:443", "acme.com"),
    ],
)
def test_domains_are_normalized_and_free_mail_never_counts(raw, key):
    assert domain_key(raw) == key


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("Müller Maschinenbau GmbH & Co. KG", "muller maschinenbau"),
        ("ACME INTL. S.A.", "acme international"),
        ("Société Générale S.A.", "societe generale"),
        ("Acme Technology B.V.", "acme technologies"),
        ("The Acme Company, Inc.", "acme"),
    ],
)
def test_names_fold_case_accents_punctuation_suffixes_and_abbreviations(raw, key):
    assert name_key(raw) == key


@pytest.mark.django_db
def test_an_id_of_a_merged_account_resolves_to_its_survivor(make_user):
    # given
    world = helpers.world()
    md.merge_request(survivor=world.survivor, loser=world.loser,
                     actor=helpers.steward(make_user), reason="one company")  # fmt: skip
    # when
    found = identity_resolve(system="crm", external_id="001L", legal_name="x", country="GB")
    # then
    assert (found.status, found.account, found.level) == ("match", world.survivor, "crosswalk")


@pytest.mark.django_db
def test_an_ambiguous_customer_raises_an_exception_for_stewards_and_holds_the_order():
    # given: two accounts share one VAT number, written differently
    first = factories.account(legal_name="Acme Ltd", tax_id="GB123456789")
    second = factories.account(legal_name="Acme Trading Ltd", tax_id="GB 123 456 789",
                               legal_entity=first.legal_entity)  # fmt: skip
    quote = services.quote_create(
        cpq_quote_id="CPQ-AMB-1", account=None, legal_entity=first.legal_entity,
        currency="GBP", approved_at=first.created_at, lines=[factories.line()],
        customer_snapshot={"name": "ACME LIMITED", "country": "GB", "tax_id": "123456789"},
        actor=factories.actor(), reason="test setup",
    )  # fmt: skip
    order = services.quote_convert_to_order(quote=quote, actor=factories.actor(), reason="t")
    run = engine.workflow_start(kind="quote_to_cash", subject_id=order.enterprise_id,
                                order=order, actor=Actor.system("worker"))  # fmt: skip
    # when: validate, then resolve the customer
    for _ in range(2):
        step = StepRun.objects.filter(run=run, state=StepState.QUEUED).order_by("position")[0]
        engine.step_execute(step_id=step.pk)
    # then
    (exc,) = OperationalException.objects.all()
    assert (exc.category, exc.owner_team, exc.error_class, exc.step) == (
        Category.MASTER_DATA,
        "data_steward",
        "AmbiguousCustomer",
        "resolve_customer",
    )
    assert exc.context["candidates"] == [first.enterprise_id, second.enterprise_id]
    order = Order.objects.get(pk=order.pk)
    assert (order.state, order.account_id) == (OrderState.ON_HOLD, None)
