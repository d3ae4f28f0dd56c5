import pytest

from q2c import services
from q2c.models import OrderState
from tests import factories


@pytest.mark.django_db
def test_order_goes_through_its_happy_path_with_history():
    # given
    order = factories.order()
    actor = factories.actor()
    # when
    for step in (
        services.order_validate,
        services.order_submit_to_erp,
        services.order_accept,
        services.order_start_provisioning,
        services.order_activate,
        services.order_fulfil,
    ):
        step(order=order, actor=actor, reason=f"test {step.__name__}")
    # then
    order.refresh_from_db()
    assert order.state == OrderState.FULFILLED
    assert order.enterprise_id == "ORD-000001"
    rows = list(
        order.history.order_by("history_id").values_list(
            "state", "history_user__username", "history_change_reason"
        )
    )
    assert rows[-1] == ("fulfilled", "worker", "test order_fulfil")
