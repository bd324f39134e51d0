"""moto's S3 server with HTTP keep-alive, like real S3 (``python -m bench._moto -p PORT``).

moto_server answers HTTP/1.0, so boto3 opens a new TCP connection for every request:
a cost of the emulator, not of the farm. Same server, HTTP/1.1.
"""

from __future__ import annotations

from moto.server import MotoRequestHandler, main

MotoRequestHandler.protocol_version = "HTTP/1.1"

if __name__ == "__main__":
    main()
