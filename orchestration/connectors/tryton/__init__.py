"""Tryton as the ERP: ``erp.TrytonErp`` (the ERP API), ``polling`` (its changes as events),
``session`` (login and the JSON-RPC call), ``codec`` (values and errors), ``records``."""
