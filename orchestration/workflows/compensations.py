"""Compensations the workflows declare: how an effect already made in a system is reversed."""

from __future__ import annotations

from orchestration.connectors.registry import connector_for
from orchestration.workflows.engine import CompensationDef


def _erp_order_cancel(target: str, key: str) -> str:
    cancelled = connector_for("erp").sales_order_cancel(sales_order_id=target, idempotency_key=key)
    return cancelled.status


CANCEL_ERP_ORDER = CompensationDef(
    code="cancel_erp_order",
    label="Cancel the ERP sales order",
    reverses="create_erp_order",
    system="erp",
    operation="sales_order_cancel",
    execute=_erp_order_cancel,
    refused="the ERP refused the cancellation",
    done="ERP sales order {target} cancelled ({status})",
    result_key="erp_sales_order",
)
