"""Sign-in lockout and API throttling: 30 wrong passwords and then the right one are no
longer all accepted; the API answers 429 with Retry-After past its rate, per token (per
address before authentication), so one client's flood takes nothing from another."""

from __future__ import annotations

import pytest

from core.tokens import api_token_issue


def _sign_in(client, username: str, password: str, address: str = "10.0.0.1"):  # type: ignore[no-untyped-def]
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


@pytest.mark.django_db
def test_after_five_wrong_passwords_even_the_right_one_is_refused(client, make_user, settings):
    # given
    make_user("sam", role="sales_ops")
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        assert _sign_in(client, "sam", "wrong").status_code == 200  # the form again
    # when
    response = _sign_in(client, "sam", "pw")
    # then: not signed in
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert client.get("/").status_code == 302


@pytest.mark.django_db
def test_the_lock_is_per_username_from_any_address_and_per_address(client, make_user, settings):
    # given: wrong passwords for sam from many addresses
    make_user("sam", role="sales_ops")
    make_user("rita", role="sales_ops")
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        _sign_in(client, "sam", "wrong", address=f"10.0.1.{n}")
    # when / then: sam is locked from a fresh address; rita from another address is not
    assert _sign_in(client, "sam", "pw", address="10.0.2.1").status_code == 200
    assert _sign_in(client, "rita", "pw", address="10.0.2.2").status_code == 302
    # given: one address guessing many usernames
    client.logout()
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        _sign_in(client, f"nobody{n}", "x", address="10.0.3.1")
    # then: that address is locked, even for a right password
    assert _sign_in(client, "rita", "pw", address="10.0.3.1").status_code == 200


@pytest.mark.django_db
def test_fewer_failures_than_the_limit_then_the_right_password_signs_in(
    client, make_user, settings
):
    # given
    make_user("sam", role="sales_ops")
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 1):
        _sign_in(client, "sam", "wrong")
    # when
    response = _sign_in(client, "sam", "pw")
    # then
    assert response.status_code == 302


@pytest.mark.django_db
def test_the_api_answers_429_with_retry_after_past_its_rate(client, make_user, settings):
    # given: a rate of 3 a minute per token
    settings.API_THROTTLE_USER = "3/min"
    user = make_user("ivan", role="integration_support")
    headers = {"HTTP_AUTHORIZATION": f"Token {api_token_issue(user=user)}"}
    # when
    statuses = [client.get("/api/v1/orders/", **headers).status_code for _ in range(4)]
    last = client.get("/api/v1/orders/", **headers)
    # then
    assert statuses == [200, 200, 200, 429]
    assert last.status_code == 429
    assert 1 <= int(last["Retry-After"]) <= 60


@pytest.mark.django_db
def test_one_token_past_its_rate_takes_nothing_from_another_or_from_the_console(
    client, make_user, settings
):
    # given: token A has used up its rate, from the same address as B
    settings.API_THROTTLE_USER = "3/min"
    token_a = api_token_issue(user=make_user("ann", role="integration_support"))
    token_b = api_token_issue(user=make_user("bob", role="integration_support"))
    a_statuses = [
        client.get("/api/v1/orders/", HTTP_AUTHORIZATION=f"Token {token_a}").status_code
        for _ in range(5)
    ]
    # when
    b = client.get("/api/v1/orders/", HTTP_AUTHORIZATION=f"Token {token_b}")
    client.force_login(make_user("sue", role="sales_ops"))
    console = client.get("/")
    # then
    assert a_statuses == [200, 200, 200, 429, 429]
    assert (b.status_code, console.status_code) == (200, 200)
