"""The simulated systems, one per kind Tandem connects to."""

from __future__ import annotations

from sandbox.systems.base import System
from sandbox.systems.billing import BillingSystem
from sandbox.systems.cpq import CpqSystem
from sandbox.systems.crm import CrmSystem
from sandbox.systems.erp import ErpSystem
from sandbox.systems.payments import PaymentsSystem
from sandbox.systems.tax import TaxSystem


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
