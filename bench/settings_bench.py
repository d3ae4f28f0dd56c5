"""Tandem's production settings plus one URL: the ceiling view of ``bench/ingest.py``.

Only the benchmark's gunicorn uses this module; Tandem's own URLs are served unchanged.
"""

from tandem.settings import *  # noqa: F403

ROOT_URLCONF = "bench.ceiling_urls"
