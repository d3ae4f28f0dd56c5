"""The demo's broker: kombu's filesystem transport, with atomic message files.

kombu writes a message by opening ``<name>.msg`` and then writing into it; a worker polling
the folder can move and read the file in between, get an empty payload and die on the JSON
error. Here a message is written under a name the reader ignores and renamed into place, so
a reader only ever sees complete files. Registered for ``filesystem://`` in ``tandem.celery``.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".partial"  # "<queue>.msg.partial" is not "<queue>.msg": skipped
        try:
            with open(partial, "wb", buffering=0) as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
