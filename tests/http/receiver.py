#!/usr/bin/python3
"""receiver.py: a local HTTP receiver for the http channel tests.

A threaded HTTP/1.1 server (keep-alive) on 127.0.0.1 that records every
request as one JSON line in a log file and answers as told per path. It is
deliberately independent of the C code under test: webhook signatures
(Standard Webhooks) and Aliyun RPC signatures are recomputed here with
Python's own hmac/hashlib/base64/urllib from the published algorithms.

Usage:
  receiver.py --port 0 --log FILE [--config FILE.json] [--route PATH=JSON]...
              [--webhook-secret whsec_...] [--aliyun-secret SECRET]

With --port 0 the kernel picks a port; the first line on stdout is the port
number (then stdout is flushed), so a test can read it and connect.

Routes (from --config {"routes": {...}} or --route PATH='{"status": 503}')
match the request path (query string excluded) by longest prefix. Keys:
  status        response status (default 200)
  retry_after   Retry-After header value (string: seconds or an HTTP-date)
  delay         seconds to sleep before answering (after recording)
  location      Location header (for 3xx)
  reset         true: close the connection with a TCP RST instead of answering
  body          response body (a string, or any JSON value, sent as JSON)
  content_type  response Content-Type (default application/json)
Without a route, the answer is 200 {"status": "ok"}, except for Twilio-shaped
paths (.../Messages.json: 201 with a message resource) and Aliyun requests
(Action=SendSms: 200 {"Code": "OK", ...}).

Each log line holds: t (arrival, unix seconds, float), client_port (the
peer's port: requests sharing it came over one kept-alive connection),
method, path, query
(the raw query string), headers (a mapping, names lower-cased; repeated
headers joined with ", "), body (text, UTF-8 with replacement), form (parsed
application/x-www-form-urlencoded body or query for GET, keys to lists),
json (the parsed JSON body or null), and when a secret was given,
signature_valid (Standard Webhooks, true/false) and aliyun_signature_valid.
"""
import argparse
import base64
import hashlib
import hmac
import json
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def webhook_signature_valid(secret, headers, body):
    """Standard Webhooks v1: base64(HMAC-SHA256(key, id.timestamp.body)),
    key = base64-decoded secret after the "whsec_" prefix; the header holds
    space-separated "v1,<sig>" entries, any one of which may match."""
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sig_header = headers.get("webhook-signature")
    if not (msg_id and ts and sig_header):
        return False
    if secret.startswith("whsec_"):
        secret = secret[len("whsec_"):]
    key = base64.b64decode(secret)
    signed = msg_id.encode() + b"." + ts.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for entry in sig_header.split(" "):
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


def aliyun_percent_encode(s):
    """Aliyun's documented encoding: URL-encode UTF-8 with '+' -> %20,
    '*' -> %2A and %7E -> '~', i.e. RFC 3986 with only unreserved kept."""
    out = urllib.parse.quote_plus(s, encoding="utf-8")
    return out.replace("+", "%20").replace("*", "%2A").replace("%7E", "~")


def aliyun_signature_valid(secret, method, params):
    """Aliyun RPC signature v1.0 (HMAC-SHA1): sort the parameters (without
    Signature) by name, join percent-encoded name=value with '&', then
    StringToSign = METHOD&%2F&percentEncode(that), key = secret + '&'."""
    pairs = [(k, v) for k, v in params if k != "Signature"]
    sigs = [v for k, v in params if k == "Signature"]
    if len(sigs) != 1:
        return False
    pairs.sort(key=lambda kv: kv[0])
    canonical = "&".join(aliyun_percent_encode(k) + "=" + aliyun_percent_encode(v)
                         for k, v in pairs)
    to_sign = method + "&" + aliyun_percent_encode("/") + "&" + aliyun_percent_encode(canonical)
    digest = hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(base64.b64encode(digest).decode(), sigs[0])


class Receiver(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many concurrent connects must not hit a full backlog
    allow_reuse_address = True

    def __init__(self, addr, args, routes):
        super().__init__(addr, Handler)
        self.args = args
        self.routes = routes
        self.lock = threading.Lock()
        self.log = open(args.log, "a", encoding="utf-8")

    def route(self, path):
        best = None
        for prefix, r in self.routes.items():
            if path.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
                best = (prefix, r)
        return best[1] if best else {}

    def record(self, entry):
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True)
        with self.lock:
            self.log.write(line + "\n")
            self.log.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real webhook receivers do

    def log_message(self, fmt, *args):  # quiet: the JSON log is the record
        pass

    def handle_any(self):
        t = time.time()
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = headers[k] + ", " + v if k in headers else v
        text = body.decode("utf-8", errors="replace")
        ctype = headers.get("content-type", "")
        form_src = url.query if self.command == "GET" else (
            text if ctype.startswith("application/x-www-form-urlencoded") else "")
        pairs = urllib.parse.parse_qsl(form_src, keep_blank_values=True)
        form = {}
        for k, v in pairs:
            form.setdefault(k, []).append(v)
        try:
            parsed = json.loads(text) if ctype.startswith("application/json") else None
        except ValueError:
            parsed = None
        entry = {
            "t": t, "client_port": self.client_address[1],
            "method": self.command, "path": url.path, "query": url.query,
            "headers": headers, "body": text, "form": form, "json": parsed,
        }
        srv = self.server
        if srv.args.webhook_secret:
            entry["signature_valid"] = webhook_signature_valid(srv.args.webhook_secret,
                                                               headers, body)
        if srv.args.aliyun_secret and "Signature" in form:
            entry["aliyun_signature_valid"] = aliyun_signature_valid(
                srv.args.aliyun_secret, self.command, pairs)
        srv.record(entry)

        r = srv.route(url.path)
        if r.get("delay"):
            time.sleep(float(r["delay"]))
        if r.get("reset"):
            # SO_LINGER with a zero timeout turns close() into a TCP RST.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        status = int(r.get("status", 200))
        if "body" in r:
            out = r["body"] if isinstance(r["body"], str) else json.dumps(r["body"])
        elif url.path.endswith("/Messages.json"):
            status = int(r.get("status", 201))
            out = json.dumps({"sid": "SM" + "0" * 32, "status": "queued"})
        elif form.get("Action") == ["SendSms"]:
            out = json.dumps({"Code": "OK", "Message": "OK", "BizId": "900000000000000000^0",
                              "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8DE990"})
        else:
            out = json.dumps({"status": "ok"})
        data = out.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", r.get("content_type", "application/json"))
            self.send_header("Content-Length", str(len(data)))
            if "retry_after" in r:
                self.send_header("Retry-After", str(r["retry_after"]))
            if "location" in r:
                self.send_header("Location", r["location"])
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout test)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", required=True)
    ap.add_argument("--config")
    ap.add_argument("--route", action="append", default=[], metavar="PATH=JSON")
    ap.add_argument("--webhook-secret")
    ap.add_argument("--aliyun-secret")
    args = ap.parse_args()
    routes = {}
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            cfg = json.load(f)
        routes.update(cfg.get("routes", {}))
        args.webhook_secret = args.webhook_secret or cfg.get("webhook_secret")
        args.aliyun_secret = args.aliyun_secret or cfg.get("aliyun_secret")
    for spec in args.route:
        path, _, js = spec.partition("=")
        routes[path] = json.loads(js)
    srv = Receiver(("127.0.0.1", args.port), args, routes)
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
