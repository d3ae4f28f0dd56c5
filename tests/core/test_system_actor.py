"""System actors stay themselves even when the row they were cached as is gone or reused."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from core.audit import Actor, system_user


class Rollback(Exception):
    pass


@pytest.mark.django_db
def test_system_actor_is_never_a_person_who_reused_its_rolled_back_pk():
    # given
    with pytest.raises(Rollback), transaction.atomic():
        rolled_back_pk = system_user("scheduler").pk
        raise Rollback
    person = get_user_model().objects.create(pk=rolled_back_pk, username="eve", is_active=True)
    # when
    actor = Actor.system("scheduler")
    # then
    assert actor.user.pk != person.pk
    assert (actor.name, actor.user.is_active, actor.is_system) == ("scheduler", False, True)
    assert actor.user.has_usable_password() is False
