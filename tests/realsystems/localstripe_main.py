"""Run localstripe on 127.0.0.1 only, with its state in memory.

Executed by localstripe's own virtualenv (not Tandem's): ``python localstripe_main.py PORT``.
localstripe's own ``start()`` binds every interface (``::``) and pickles its whole store to
``/tmp/localstripe.pickle`` after every write, which other test runs on the same machine
would share; this starts its aiohttp app on loopback with a fresh, unsaved store instead.
"""

import sys

from aiohttp import web
from localstripe import resources
from localstripe.server import app


def main() -> None:
    port = int(sys.argv[1])
    resources.store.dump_to_disk = lambda: None  # keep the state in this process only
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
