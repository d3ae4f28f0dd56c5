"""System actors stay themselves even when the row they were cached as is gone or reused."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

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


@pytest.mark.django_db(transaction=True)
def test_a_committed_system_actor_costs_no_query_the_next_time(django_assert_num_queries):
    # given
    first = Actor.system("worker")
    # when
    with django_assert_num_queries(0):
        again = Actor.system("worker")
    # then
    assert again.user.pk == first.user.pk
    assert get_user_model().objects.get(pk=again.user.pk).username == "worker"


@pytest.mark.django_db(transaction=True)
def test_a_system_actor_made_inside_a_transaction_is_cached_only_once_read_outside(
    django_assert_num_queries,
):
    # given
    with transaction.atomic():
        created = system_user("connector:erp")
        with CaptureQueriesContext(connection) as inside:  # not committed yet: read again
            system_user("connector:erp")
    with CaptureQueriesContext(connection) as outside:  # committed now: read, and kept
        system_user("connector:erp")
    # when
    with django_assert_num_queries(0):
        after = system_user("connector:erp")
    # then
    assert created.pk == after.pk
    assert any('FROM "auth_user"' in q["sql"] for q in inside.captured_queries)
    assert any('FROM "auth_user"' in q["sql"] for q in outside.captured_queries)


@pytest.mark.django_db(transaction=True)
def test_a_flushed_database_makes_the_system_actor_anew():
    # given
    before = Actor.system("scheduler")
    call_command("flush", interactive=False, verbosity=0)
    # when
    after = Actor.system("scheduler")
    # then
    assert get_user_model().objects.filter(pk=before.user.pk).exists() is False
    assert get_user_model().objects.get(pk=after.user.pk).username == "scheduler"
