#!/usr/bin/python3
"""count_server.py: an SMTP sink on 127.0.0.1 that records what it accepted.

For the crash test (tests/e2e/50-kill-9.sh): every message is acknowledged
with 250 only after one line describing it has been appended to the record
file and fsync'd, so a message the client saw accepted is always on record,
whatever happens to the client (or to this server) afterwards. A client
killed after the data went through but before it read the 250 leaves a
record too: that is the duplicate a retry may cause, and it carries the same
Message-ID.

Usage:
  count_server.py --port 0 --record FILE

With --port 0 the kernel picks a port; the first line on stdout is the port
number (then stdout is flushed). Each record line is tab-separated:

  <unix time>\t<Message-ID>\t<RCPT TO addresses, comma-separated>\t<peer port>

The Message-ID is the header's value as sent (angle brackets kept), or "-"
when the message has none. The server uses Python's aiosmtpd (an SMTP
implementation independent of the libESMTP client under test).
"""
import argparse
import asyncio
import os
import sys
import time
from email.parser import BytesHeaderParser
from email.policy import compat32

from aiosmtpd.smtp import SMTP


class RecordingHandler:
    def __init__(self, path):
        # O_APPEND: each line is one write() at the end of the file.
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.parser = BytesHeaderParser(policy=compat32)
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        headers = self.parser.parsebytes(content)
        msgid = (headers.get("Message-ID") or "-").strip()
        rcpts = ",".join(envelope.rcpt_tos)
        peer = session.peer[1] if session.peer else 0
        line = "%.6f\t%s\t%s\t%s\n" % (time.time(), msgid, rcpts, peer)
        data = line.encode("utf-8", "replace")
        written = 0
        while written < len(data):  # bounded: each write makes progress or raises
            written += os.write(self.fd, data[written:])
        os.fsync(self.fd)
        self.count += 1
        return "250 OK: recorded"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--record", required=True)
    args = ap.parse_args()
    handler = RecordingHandler(args.record)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", ident="count_server", loop=loop),
        host="127.0.0.1", port=args.port, backlog=256, reuse_address=True))
    print(server.sockets[0].getsockname()[1], flush=True)
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        os.close(handler.fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
