"""Replays with a corrected payload on quote to cash: the payload is the failed step's input
(the quote's customer snapshot for resolve_customer, the account's address for
check_tax_and_entity), a correction that does not fit is refused when it is requested, and an
approved one is written to the records, with history, before the step runs again."""

from __future__ import annotations

from itertools import count

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from core.audit import Actor
from core.errors import Refused
from core.problems import Category
from exceptions import services
from exceptions.models import ExceptionState, OperationalException, Replay, ReplayKind, ReplayState
from masterdata.models import Account
from orchestration.workflows.models import RunState, StepRun, StepState
from q2c.models import OrderState, Quote
from tests import factories
from tests.exceptions.helpers import GOOD_CUSTOMER, q2c_run, run_through
from tests.orchestration.connectors.conftest import connectors, sandbox  # noqa: F401 (fixtures)

_people = count(1)

# CPQ sent an email the account cannot hold: creating the customer fails (CustomerInvalid).
BAD_CUSTOMER = {**GOOD_CUSTOMER, "email": "ap at harbour-analytics"}


def person(who: str) -> Actor:
    user = get_user_model().objects.create_user(username=f"{who}-{next(_people)}", password="pw")
    user.groups.add(Group.objects.get(name=who))
    return Actor.person(user)


def failed_to_resolve_the_customer():
    order, run = q2c_run(customer_snapshot=BAD_CUSTOMER)
    run_through(run, "resolve_customer")
    exception = OperationalException.objects.get(workflow_run=run)
    assert (exception.step, exception.category, exception.error_class) == (
        "resolve_customer",
        Category.MASTER_DATA,
        "CustomerInvalid",
    )
    return order, run, exception


def snapshot_history(quote: Quote) -> list[tuple[str, str | None]]:
    return list(
        quote.history.order_by("history_id").values_list(
            "history_user__username", "history_change_reason"
        )
    )


@pytest.mark.django_db
def test_the_original_payload_of_resolve_customer_is_the_quotes_customer_snapshot():
    # given
    _order, _run, exception = failed_to_resolve_the_customer()
    # when
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=exception.step_run, actor=person("data_steward"),
        reason="look again",
    )  # fmt: skip
    # then
    assert replay.original_payload == BAD_CUSTOMER
    assert replay.preview["uses"]["step"] == "resolve_customer"
    assert replay.preview["uses"]["payload"] == BAD_CUSTOMER
    assert replay.preview["uses"]["corrected"] is False


@pytest.mark.django_db
def test_an_approved_corrected_customer_creates_the_account_from_the_corrected_data():
    # given
    order, run, exception = failed_to_resolve_the_customer()
    corrected = {**BAD_CUSTOMER, "email": "ap@harbour-analytics.example", "country": "gb"}
    maker, checker = person("data_steward"), person("finance_ops")
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=exception.step_run, actor=maker,
        reason="CPQ sent the email with a typo", corrected_payload=corrected,
    )  # fmt: skip
    services.replay_approve(replay=replay, actor=checker, reason="checked with the customer")
    # when
    services.replay_execute(replay_id=replay.pk)
    run_through(run, "resolve_customer")
    # then
    order.refresh_from_db()
    exception.refresh_from_db()
    account = Account.objects.get(pk=order.account_id)
    assert (account.legal_name, account.email, account.country, account.postcode) == (
        "Harbour Analytics Ltd",
        "ap@harbour-analytics.example",
        "GB",
        "EH2 2LE",
    )
    assert replay.corrected_payload == {**corrected, "country": "GB"}
    quote = Quote.objects.get(pk=order.quote_id)
    assert quote.customer_snapshot == {**corrected, "country": "GB"}
    assert snapshot_history(quote)[-2:] == [
        ("worker", f"{replay} approved by {checker.name}: customer corrected"),
        ("worker", "customer resolved by creation"),
    ]
    corrected_row = quote.history.order_by("-history_id")[1]
    assert corrected_row.customer_snapshot["email"] == "ap@harbour-analytics.example"
    assert StepRun.objects.get(run=run, name="resolve_customer").state == StepState.SUCCEEDED
    assert (exception.state, exception.resolution_code) == (
        ExceptionState.RESOLVED,
        "retry_succeeded",
    )
    assert StepRun.objects.get(run=run, name="map_products").state == StepState.QUEUED


@pytest.mark.django_db
def test_without_the_correction_the_same_replay_fails_again():
    # given
    _order, run, exception = failed_to_resolve_the_customer()
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=exception.step_run, actor=person("data_steward"),
        reason="try again",
    )  # fmt: skip
    services.replay_approve(replay=replay, actor=person("finance_ops"), reason="ok")
    # when
    services.replay_execute(replay_id=replay.pk)
    run_through(run, "resolve_customer")
    # then
    replay.refresh_from_db()
    assert replay.state == ReplayState.FAILED
    assert replay.result_message.startswith("step resolve_customer failed: customer cannot be")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"country": "GBR"}, "customer: country must be a 2-letter ISO code, not 'GBR'"),
        ({"vat": "GB1"}, "customer: unknown field vat"),
        ({"name": 42}, "customer: name must be a string, not int"),
        ({"name": ""}, "customer: name required"),
        ({"email": "nobody"}, "customer: email 'nobody' is not valid"),
        ({"address": {"street": "1 High St"}}, "customer address: unknown field street"),
        ({"address": "1 High St"}, "customer: address must be an object"),
    ],
)
def test_a_correction_that_does_not_fit_the_customer_is_refused_and_nothing_changes(
    change, message
):
    # given
    order, _run, exception = failed_to_resolve_the_customer()
    history_before = snapshot_history(Quote.objects.get(pk=order.quote_id))
    # when
    with pytest.raises(Refused) as refused:
        services.replay_request(
            kind=ReplayKind.STEP, step_run=exception.step_run, actor=person("data_steward"),
            reason="fix", corrected_payload={**GOOD_CUSTOMER, **change},
        )  # fmt: skip
    # then
    assert str(refused.value).startswith(message)
    assert Replay.objects.count() == 0
    quote = Quote.objects.get(pk=order.quote_id)
    assert (quote.customer_snapshot, snapshot_history(quote)) == (BAD_CUSTOMER, history_before)


@pytest.mark.django_db
def test_a_correction_of_a_step_that_declares_no_input_is_refused():
    # given: the quote is valid but its product has no mapping
    order, run = q2c_run(customer_snapshot=GOOD_CUSTOMER)
    from masterdata.models import ProductMapping

    ProductMapping.objects.filter(product__sku=order.lines.get().product_code).delete()
    run_through(run, "map_products")
    exception = OperationalException.objects.get(workflow_run=run)
    assert (exception.step, exception.category) == ("map_products", Category.MAPPING)
    # when / then
    with pytest.raises(Refused, match="step map_products takes no corrected payload"):
        services.replay_request(
            kind=ReplayKind.STEP, step_run=exception.step_run, actor=person("data_steward"),
            reason="fix", corrected_payload={"lines": []},
        )  # fmt: skip
    assert Replay.objects.count() == 0


@pytest.mark.django_db
def test_a_correction_must_start_at_the_failed_step():
    # given
    _order, run, _exception = failed_to_resolve_the_customer()
    first = StepRun.objects.get(run=run, name="validate_quote")
    # when / then
    with pytest.raises(Refused, match="replaces the input of the failed step resolve_custo"):
        services.replay_request(
            kind=ReplayKind.STEP, step_run=first, actor=person("data_steward"), reason="fix",
            corrected_payload=GOOD_CUSTOMER,
        )  # fmt: skip
    assert Replay.objects.count() == 0


# --- the tax step: a live sandbox tax engine on loopback -------------------------------------


def failed_the_tax_check():
    entity = factories.legal_entity(erp_subsidiary="1", tax_registration="GB999999973")
    account = factories.account(
        legal_entity=entity, address_line1="1 High Street", city="London", postcode="00000"
    )
    order, run = q2c_run(customer_snapshot=GOOD_CUSTOMER, account=account)
    run_through(run, "check_tax_and_entity")
    exception = OperationalException.objects.get(workflow_run=run)
    assert (exception.step, exception.category) == ("check_tax_and_entity", Category.TAX)
    return order, run, exception, account


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("connectors")
def test_an_approved_corrected_address_updates_the_account_and_the_tax_check_passes():
    # given
    order, run, exception, account = failed_the_tax_check()
    maker, checker = person("finance_ops"), person("finance_ops")
    replay = services.replay_request(
        kind=ReplayKind.STEP, step_run=exception.step_run, actor=maker, reason="postcode typo",
        corrected_payload={"line1": "1 High Street", "city": "London", "postcode": "EC1A 1AA",
                           "country": "GB"},
    )  # fmt: skip
    assert replay.original_payload == {
        "line1": "1 High Street", "city": "London", "postcode": "00000", "country": "GB",
    }  # fmt: skip
    services.replay_approve(replay=replay, actor=checker, reason="agreed")
    # when
    services.replay_execute(replay_id=replay.pk)
    run_through(run, "check_tax_and_entity")
    # then
    account.refresh_from_db()
    assert (account.address_line1, account.city, account.postcode, account.country) == (
        "1 High Street",
        "London",
        "EC1A 1AA",
        "GB",
    )
    newest = account.history.order_by("-history_id").first()
    assert (newest.history_user.username, newest.history_change_reason, newest.postcode) == (
        "worker",
        f"{replay} approved by {checker.name}: address corrected",
        "EC1A 1AA",
    )
    step = StepRun.objects.get(run=run, name="check_tax_and_entity")
    assert (step.state, step.result) == (StepState.SUCCEEDED, {"address": "Street"})
    exception.refresh_from_db()
    assert exception.state == ExceptionState.RESOLVED
    order.refresh_from_db()
    assert order.state == OrderState.VALIDATED
    assert run.steps.get(name="upsert_customer_erp").state == StepState.QUEUED
    run.refresh_from_db()
    assert run.state == RunState.RUNNING


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("connectors")
def test_a_malformed_address_is_refused_and_the_account_is_unchanged():
    # given
    _order, _run, exception, account = failed_the_tax_check()
    rows_before = account.history.count()
    # when
    with pytest.raises(Refused) as refused:
        services.replay_request(
            kind=ReplayKind.STEP, step_run=exception.step_run, actor=person("finance_ops"),
            reason="fix", corrected_payload={"line1": "1 High Street", "city": "London",
                                             "postcode": "EC1A 1AA", "country": "Britain"},
        )  # fmt: skip
    # then
    assert str(refused.value) == "address: country must be a 2-letter ISO code, not 'Britain'"
    assert Replay.objects.count() == 0
    account.refresh_from_db()
    assert (account.postcode, account.history.count()) == ("00000", rows_before)
