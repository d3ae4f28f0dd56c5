"""Reconciliation: Tandem's canonical records against each system's own, as drift items.

``compare`` is pure (rows in, findings out, set-based); ``sources`` reads each side in bulk
(Tandem) or page by page (the systems' listings); ``services`` runs a reconciliation and keeps
the drift items (opened, seen again, closed by themselves, resolved by finance).
"""
