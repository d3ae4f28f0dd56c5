"""Row locks on accounts, always taken in primary-key order so two stewards never deadlock."""

from __future__ import annotations

from collections.abc import Iterable

from masterdata.models import Account, AccountStatus

# A merge chain longer than this is a cycle (or corrupt data): stop following it.
MAX_CHAIN = 20


def lock_accounts(ids: Iterable[int]) -> dict[int, Account]:
    """Lock the accounts (inside a transaction), in pk order; keyed by pk."""
    rows = Account.objects.select_for_update().filter(pk__in=sorted(set(ids))).order_by("pk")
    return {account.pk: account for account in rows}


def lock_account_survivor(account_id: int) -> Account:
    """Lock and return the live account that ``account_id`` stands for today.

    A merge locks both of its accounts, so this waits for a merge in progress and then sees
    its outcome: an order being assigned to the loser lands on the survivor. A merged
    account's lock is held while its survivor is locked; the merge that linked them has
    committed by then, so this never waits on a lock that merge still holds.
    """
    current = account_id
    for _ in range(MAX_CHAIN):
        account = Account.objects.select_for_update().get(pk=current)
        if account.status == AccountStatus.ACTIVE or account.merged_into_id is None:
            return account
        current = account.merged_into_id
    raise RuntimeError(f"account {account_id}: merge chain longer than {MAX_CHAIN}")
