"""The filesystem broker never hands a worker a half-written message."""

from __future__ import annotations

import threading
from pathlib import Path
from queue import Empty

from kombu import Connection

from tandem.broker import Transport


def _connection(folder: Path) -> Connection:
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder),
               "control_folder": str(folder / "control"), "polling_interval": 0.01}  # fmt: skip
    (folder / "control").mkdir(exist_ok=True)
    return Connection(transport=Transport, transport_options=options)


def test_the_celery_app_uses_the_atomic_transport_for_filesystem_urls():
    # given
    from tandem.celery import app

    # when
    with app.connection_for_write("filesystem://") as connection:
        transport = type(connection.transport)
    # then
    assert transport is Transport


def test_a_message_still_being_written_is_not_picked_up(tmp_path: Path):
    # given
    (tmp_path / "1_abc.default.msg.partial").write_bytes(b"")
    with _connection(tmp_path) as connection:
        channel = connection.default_channel
        # when / then
        try:
            channel._get("default")
        except Empty:
            pass
        else:
            raise AssertionError("a partial file was delivered")
    assert (tmp_path / "1_abc.default.msg.partial").exists()


def test_concurrent_writers_and_a_reader_exchange_every_message_whole(tmp_path: Path):
    # given
    total = 1000
    received: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def write(offset: int) -> None:
        with _connection(tmp_path) as connection:
            for n in range(offset, total, 2):
                connection.default_channel._put("default", {"n": n, "pad": "x" * 2000})

    def read() -> None:
        with _connection(tmp_path) as connection:
            channel = connection.default_channel
            while len(received) < total:
                try:
                    received.append(channel._get("default"))
                except Empty:
                    continue
                except BaseException as exc:  # reported by the assertion below
                    errors.append(exc)
                    return

    threads = [
        threading.Thread(target=read),
        *(threading.Thread(target=write, args=(i,)) for i in (0, 1)),
    ]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # then
    assert errors == []
    assert sorted(message["n"] for message in received) == list(range(total))
