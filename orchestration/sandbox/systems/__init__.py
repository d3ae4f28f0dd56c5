"""The simulated systems, one per kind Tandem connects to."""

from __future__ import annotations

from orchestration.sandbox.systems.base import System
from orchestration.sandbox.systems.billing import BillingSystem
from orchestration.sandbox.systems.cpq import CpqSystem
from orchestration.sandbox.systems.crm import CrmSystem
from orchestration.sandbox.systems.erp import ErpSystem
from orchestration.sandbox.systems.payments import PaymentsSystem
from orchestration.sandbox.systems.tax import TaxSystem


def systems_build() -> dict[str, System]:
    systems: list[System] = [
        CrmSystem(),
        CpqSystem(),
        BillingSystem(),
        ErpSystem(),
        TaxSystem(),
        PaymentsSystem(),
    ]
    return {system.name: system for system in systems}
