"""botocore sessions that share one loader of botocore's JSON models per process.

Each new botocore session parses the endpoint rules and the S3 service model again
(~0.3 s of CPU); the API, each worker's stores and every test build an ``S3Storage``, so
the parsed models are kept here, in botocore's own ``Loader`` (it caches what it has
loaded), and every session is given it. Credentials and configuration stay per session.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botocore.loaders import Loader
    from botocore.session import Session


@cache
def _shared_loader() -> Loader:
    from botocore.loaders import create_loader

    return create_loader()


def botocore_session() -> Session:
    """A fresh botocore session (its own credentials and config) with the shared loader."""
    from botocore.session import get_session

    session = get_session()
    session.register_component("data_loader", _shared_loader())
    return session
