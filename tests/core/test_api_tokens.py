"""API tokens are stored hashed and shown once: the database never holds a usable token,
the token authenticates by its digest, the admin shows who has one but never the token, and
the clear tokens of earlier releases are moved into digests by the migration."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib

import pytest
from django.apps import apps
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from core.errors import Refused
from core.models import ApiToken
from core.tokens import api_token_issue

hashing_migration = importlib.import_module("core.migrations.0002_api_token_hashed_doors")


def _database_text() -> str:
    """Every row of the token table as text, to search for a token in clear."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM core_apitoken")
        return repr(cursor.fetchall())


@pytest.mark.django_db
def test_the_database_never_holds_the_token_and_the_token_authenticates(make_user):
    # given
    user = make_user("bot", role="integration_support")
    # when
    key = api_token_issue(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.get(reverse("api-order-list"))
    # then
    assert len(key) == 40
    assert key not in _database_text()
    assert list(ApiToken.objects.values_list("user", "digest", "prefix")) == [
        (user.pk, hashlib.sha256(key.encode()).hexdigest(), key[:8])
    ]
    assert response.status_code == 200


@pytest.mark.django_db
def test_the_digest_itself_is_not_a_token(make_user):
    # given: someone who read the table
    api_token_issue(user=make_user("bot", role="integration_support"))
    digest = ApiToken.objects.get().digest
    client = APIClient()
    # when
    client.credentials(HTTP_AUTHORIZATION=f"Token {digest}")
    response = client.get(reverse("api-order-list"))
    # then
    assert response.status_code == 401


@pytest.mark.django_db
def test_a_second_token_is_refused_unless_rotated_and_rotation_revokes_the_first(make_user):
    # given
    user = make_user("bot", role="integration_support")
    first = api_token_issue(user=user)
    # when
    with pytest.raises(Refused) as refused:
        api_token_issue(user=user)
    second = api_token_issue(user=user, rotate=True)
    # then
    assert refused.value.kind == Refused.Kind.DUPLICATE
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert client.get(reverse("api-order-list")).status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Token {second}")
    assert client.get(reverse("api-order-list")).status_code == 200


@pytest.mark.django_db
def test_the_admin_shows_a_token_once_when_issued_and_never_again(admin_client, make_user):
    # given
    bot = make_user("bot", role="integration_support")
    # when
    issued = admin_client.post(reverse("admin:core_apitoken_add"), {"user": bot.pk})
    token = ApiToken.objects.get()
    listing = admin_client.get(reverse("admin:core_apitoken_changelist"))
    detail = admin_client.get(reverse("admin:core_apitoken_change", args=[token.pk]))
    again = admin_client.post(reverse("admin:core_apitoken_add"), {"user": bot.pk})
    # then: the clear token is on the answer to the issue only
    assert issued.status_code == 200
    key = issued.context["token"]
    assert hashlib.sha256(key.encode()).hexdigest() == token.digest
    assert f'<code class="api-token">{key}</code>'.encode() in issued.content
    assert "no-store" in issued["Cache-Control"]
    assert (listing.status_code, detail.status_code) == (200, 200)
    for page in (listing, detail):
        assert key.encode() not in page.content
        assert token.digest.encode() not in page.content
        assert token.prefix.encode() in page.content
    assert again.status_code == 200  # the form again, with the error: one token per user
    assert ApiToken.objects.count() == 1


@pytest.mark.django_db
def test_the_migration_turns_clear_tokens_into_digests_and_deletes_them(make_user):
    # given: DRF's token table of an earlier release, with one token
    user = make_user("bot", role="integration_support")
    key = "a" * 40
    created = timezone.now() - dt.timedelta(days=3)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamp with time zone NOT NULL, user_id integer NOT NULL UNIQUE)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s)",
            [key, created, user.pk],
        )
    # when
    with connection.schema_editor() as editor:
        hashing_migration.legacy_tokens_hash(apps, editor)
    # then: the same token still signs in; the clear copy is gone
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM authtoken_token")
        assert cursor.fetchone() == (0,)
    assert list(ApiToken.objects.values_list("user", "digest", "prefix", "created")) == [
        (user.pk, hashlib.sha256(key.encode()).hexdigest(), "aaaaaaaa", created)
    ]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get(reverse("api-order-list")).status_code == 200
