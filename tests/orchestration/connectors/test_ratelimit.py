import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from orchestration.connectors.errors import RetryableError
from orchestration.connectors.ratelimit import (
    LocalRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    rate_limiter,
)
from orchestration.connectors.sandbox.erp import SandboxErp

# The suite's own Redis database when the broker is Redis, else the local default one.
FALLBACK_REDIS_URL = "redis://127.0.0.1:6379/7"


@pytest.fixture
def redis_url(settings) -> str:
    broker = settings.CELERY_BROKER_URL
    return broker if broker.startswith("redis://") else FALLBACK_REDIS_URL


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"tandem:test-ratelimit:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    client.delete(*client.keys(prefix + "*") or [prefix])
    client.close()


def _acquire_from_threads(limiters: list[RateLimiter], times_each: int, rate: float) -> float:
    """Seconds for every limiter, each in its own thread, to acquire ``times_each`` slots."""
    start = threading.Barrier(len(limiters) + 1)

    def worker(limiter: RateLimiter) -> None:
        start.wait()
        for _ in range(times_each):
            limiter.acquire("erp", rate)

    threads = [threading.Thread(target=worker, args=(limiter,)) for limiter in limiters]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.monotonic()
    for thread in threads:
        thread.join()
    return time.monotonic() - began


def test_two_redis_limiters_share_one_budget_across_threads(redis_url, key_prefix):
    # given two workers' limiters, each with its own connection
    first = RedisRateLimiter(redis_url, key_prefix=key_prefix)
    second = RedisRateLimiter(redis_url, key_prefix=key_prefix)
    # when 10 acquisitions at 5/s: one at once, then nine 0.2 s apart
    elapsed = _acquire_from_threads([first, second], times_each=5, rate=5.0)
    # then
    assert elapsed >= 1.75


def test_a_redis_limiter_waits_for_the_slot_another_worker_took(redis_url, key_prefix):
    # given
    first = RedisRateLimiter(redis_url, key_prefix=key_prefix)
    second = RedisRateLimiter(redis_url, key_prefix=key_prefix)
    # when
    first_wait = first.acquire("erp", 2.0)
    second_wait = second.acquire("erp", 2.0)
    other_system_wait = second.acquire("billing", 2.0)
    # then
    assert first_wait == 0.0
    assert second_wait >= 0.4
    assert other_system_wait == 0.0


def test_the_local_limiter_spaces_acquisitions_across_threads():
    # given
    limiter = LocalRateLimiter()
    # when
    elapsed = _acquire_from_threads([limiter, limiter], times_each=5, rate=5.0)
    # then
    assert elapsed >= 1.75


def test_a_rate_of_zero_means_no_limit(redis_url, key_prefix):
    # given
    limiters = [LocalRateLimiter(), RedisRateLimiter(redis_url, key_prefix=key_prefix)]
    # when
    waits = [limiter.acquire("erp", 0) for limiter in limiters for _ in range(3)]
    # then
    assert waits == [0.0] * 6


def test_the_limiter_follows_the_broker(settings):
    # when
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/7"
    on_redis = rate_limiter()
    settings.CELERY_BROKER_URL = "filesystem://"
    on_files = rate_limiter()
    # then
    assert (type(on_redis), type(on_files)) == (RedisRateLimiter, LocalRateLimiter)
    assert rate_limiter() is on_files


def test_an_unreachable_redis_is_retryable():
    # given a port that is bound but not listening: connecting is refused
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        limiter = RedisRateLimiter(f"redis://127.0.0.1:{closed.getsockname()[1]}/0")
        # when
        with pytest.raises(RetryableError) as raised:
            limiter.acquire("erp", 5.0)
    # then
    assert (raised.value.system, raised.value.kind, raised.value.message) == (
        "erp",
        "rate_limiter_unavailable",
        "the shared rate limiter is unavailable (ConnectionError)",
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("connectors")
def test_every_call_through_the_transport_takes_a_slot(settings, sandbox):
    # given
    settings.TANDEM_CONNECTORS["erp"]["rate_limit_per_second"] = 4.0
    erp = SandboxErp()
    erp.customer_find(reference="ACC-000001")  # the budget starts from this call
    began = time.monotonic()
    # when
    for _ in range(2):
        erp.customer_find(reference="ACC-000001")
    # then
    assert time.monotonic() - began >= 0.45
