#!/usr/bin/python3
"""SMTP server with STARTTLS and AUTH for the email tests (test_email_tls.c).

    tls_server.py PORT CERTDIR OUTDIR [--no-starttls] [--user U] [--password P]
                  [--san SUBJECT_ALT_NAMES]

Listens on 127.0.0.1:PORT only. Unless --no-starttls, it offers STARTTLS
with CERTDIR/cert.pem (a self-signed certificate, created with openssl on
first use, whose subjectAltName is --san, by default
"DNS:localhost,IP:127.0.0.1") and requires it before MAIL and AUTH; with
--user it requires AUTH (PLAIN or LOGIN) as that user.

Each accepted message goes to OUTDIR/msg-NNN.eml (the bytes as received)
with OUTDIR/msg-NNN.json beside it: envelope sender and recipients, whether
the session was in TLS, and the authenticated login. Every AUTH attempt is
appended to OUTDIR/auth.log as "MECHANISM LOGIN ok|fail". OUTDIR/ready
appears once the server accepts connections; SIGTERM stops it.
"""
import argparse
import json
import os
import signal
import ssl
import subprocess
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def write_atomic(path, data):
    """Readers poll for these files: they must never see half of one."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def ensure_cert(certdir, san):
    cert = os.path.join(certdir, "cert.pem")
    key = os.path.join(certdir, "key.pem")
    if not (os.path.exists(cert) and os.path.exists(key)):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec",
             "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key + ".tmp", "-out", cert + ".tmp", "-days", "2",
             "-subj", "/CN=localhost",
             "-addext", "subjectAltName=" + san],
            check=True, capture_output=True)
        os.rename(key + ".tmp", key)
        os.rename(cert + ".tmp", cert)
    return cert, key


class Store:
    """Keeps every message with what the session knew about its sender."""

    def __init__(self, outdir):
        self.outdir = outdir
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            base = os.path.join(self.outdir, "msg-%03d" % self.count)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
            "login": session.auth_data if isinstance(session.auth_data, str) else None,
        }
        write_atomic(base + ".eml", envelope.original_content or envelope.content)
        write_atomic(base + ".json", json.dumps(meta).encode())
        return "250 2.0.0 Ok: stored"


class Authenticator:
    """Accepts exactly one user; logs every attempt, never the password."""

    def __init__(self, outdir, user, password):
        self.log = os.path.join(outdir, "auth.log")
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == self.user
              and auth_data.password == self.password)
        login = auth_data.login.decode(errors="replace") if isinstance(auth_data, LoginPassword) else "?"
        with open(self.log, "a") as f:
            f.write("%s %s %s\n" % (mechanism, login, "ok" if ok else "fail"))
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("certdir")
    ap.add_argument("outdir")
    ap.add_argument("--no-starttls", action="store_true")
    ap.add_argument("--user")
    ap.add_argument("--password", default="")
    ap.add_argument("--san", default="DNS:localhost,IP:127.0.0.1")
    args = ap.parse_args()

    kwargs = {}
    if not args.no_starttls:
        cert, key = ensure_cert(args.certdir, args.san)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        kwargs.update(tls_context=ctx, require_starttls=True, auth_require_tls=True)
    else:
        kwargs.update(auth_require_tls=False)
    if args.user:
        kwargs.update(authenticator=Authenticator(args.outdir, args.user, args.password),
                      auth_required=True)

    controller = Controller(Store(args.outdir), hostname="127.0.0.1", port=args.port,
                            server_hostname="tls-test", **kwargs)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    controller.start()
    write_atomic(os.path.join(args.outdir, "ready"), b"ready\n")
    while not stop.wait(0.2):
        pass
    controller.stop()


if __name__ == "__main__":
    main()
