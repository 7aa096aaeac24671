#!/usr/bin/python3
"""reject_server.py: an SMTP server that refuses what a test tells it to.

For tests/e2e/41-failure-attribution.sh: the failures nudge must attribute.

    reject_server.py --port 0 --record FILE [--user U --password P]

With --port 0 the kernel picks a port; the first line on stdout is the port.
Plain text, no STARTTLS (AUTH allowed in clear: it is loopback).
  - MAIL FROM from any address starting "rejected@": 550 5.7.1 (sender fault)
  - RCPT TO any address starting "unknown": 550 5.1.1 (recipient fault)
  - with --user: AUTH is required and only U / P is accepted; a wrong
    password gets aiosmtpd's 535 5.7.8 (sender fault)
Every accepted message appends "MAIL_FROM<TAB>RCPT" to FILE.
"""
import argparse
import asyncio
import os
import socket
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, record):
        self.record = record

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if address.startswith("rejected@"):
            return "550 5.7.1 <%s>: Sender address rejected: not authorised" % address
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("unknown"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with open(self.record, "a") as f:
            f.write("%s\t%s\n" % (envelope.mail_from, ",".join(envelope.rcpt_tos)))
        return "250 2.0.0 Ok: stored"


class Authenticator:
    def __init__(self, user, password):
        self.user, self.password = user.encode(), password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == self.user
              and auth_data.password == self.password)
        return AuthResult(success=ok, handled=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--record", required=True)
    ap.add_argument("--user")
    ap.add_argument("--password", default="")
    args = ap.parse_args()
    kwargs = {"auth_require_tls": False}
    if args.user:
        kwargs.update(authenticator=Authenticator(args.user, args.password), auth_required=True)
    handler = Handler(args.record)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    server = loop.run_until_complete(
        loop.create_server(lambda: SMTP(handler, hostname="reject-test", **kwargs), sock=sock))
    print(sock.getsockname()[1], flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main())
