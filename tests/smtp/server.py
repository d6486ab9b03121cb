#!/usr/bin/env python3
"""A real SMTP server on loopback for the keepalive's mail tests (aiosmtpd).

Modes:
  starttls  offers STARTTLS (with --cert/--key), requires it before anything else, and only
            then offers AUTH PLAIN/LOGIN; AUTH is required before MAIL. The submission setup of
            a real relay on port 587.
  plain     no STARTTLS at all, but AUTH offered in plaintext: a client that must refuse to
            send credentials over an unencrypted connection is tested against it.

The server binds 127.0.0.1 on an ephemeral port and reports on standard output, one JSON
object per line, flushed:
  {"event": "ready", "port": N}
  {"event": "connect"} / {"event": "closed"}
  {"event": "starttls"}
  {"event": "auth", "mechanism": "PLAIN", "username": "...", "success": true, "tls": true}
  {"event": "message", "mail_from": "...", "rcpt_tos": [...], "username": "...", "tls": true,
   "data": "<raw message>", "subject": "...", "body": "<decoded text body>"}
The password itself is never printed: auth events only say whether it matched.

It exits by itself after --lifetime seconds (default 120), on SIGTERM, or when its standard
input closes (the test that spawned it went away).
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import socket
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Handler:
    def handle_STARTTLS(self, server, session, envelope):
        # aiosmtpd calls this hook synchronously once the TLS handshake is done.
        emit({"event": "starttls"})
        return True

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or b""
        text = raw.decode("utf-8", "replace")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",))
        body = part.get_content() if part is not None else ""
        emit(
            {
                "event": "message",
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "username": session.auth_data,
                "tls": session.ssl is not None,
                "data": text,
                "subject": str(msg.get("Subject", "")),
                "from_header": str(msg.get("From", "")),
                "to_header": str(msg.get("To", "")),
                "body": body,
            }
        )
        return "250 2.0.0 OK queued"


class Authenticator:
    def __init__(self, username, password):
        self.username = username.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            emit({"event": "auth", "mechanism": mechanism, "username": None,
                  "success": False, "tls": session.ssl is not None})
            return AuthResult(success=False, handled=False)
        ok = auth_data.login == self.username and auth_data.password == self.password
        emit(
            {
                "event": "auth",
                "mechanism": mechanism,
                "username": auth_data.login.decode("utf-8", "replace"),
                "success": ok,
                "tls": session.ssl is not None,
            }
        )
        if ok:
            return AuthResult(success=True, auth_data=auth_data.login.decode())
        return AuthResult(success=False, handled=False)


class ReportingSMTP(SMTP):
    def connection_made(self, transport):
        # connection_made runs again after STARTTLS; report only the TCP connection.
        if not getattr(self, "_reported_connect", False):
            self._reported_connect = True
            emit({"event": "connect"})
        super().connection_made(transport)

    def connection_lost(self, error):
        if not getattr(self, "_reported_closed", False):
            self._reported_closed = True
            emit({"event": "closed"})
        super().connection_lost(error)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["starttls", "plain"], default="starttls")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--username", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--lifetime", type=float, default=120.0)
    args = ap.parse_args()

    tls_context = None
    if args.mode == "starttls":
        if not args.cert or not args.key:
            ap.error("--mode starttls needs --cert and --key")
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.cert, args.key)

    handler = Handler()
    authenticator = Authenticator(args.username, args.password)

    def factory():
        return ReportingSMTP(
            handler,
            hostname="smtp.test",
            tls_context=tls_context,
            require_starttls=tls_context is not None,
            auth_required=True,
            auth_require_tls=tls_context is not None,
            authenticator=authenticator,
            timeout=30,
        )

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, sock=sock)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def watch_stdin():
        # The test keeps our stdin open; EOF means it is gone.
        try:
            sys.stdin.buffer.read()
        finally:
            loop.call_soon_threadsafe(stop.set)

    loop.run_in_executor(None, watch_stdin)
    loop.call_later(args.lifetime, stop.set)

    emit({"event": "ready", "port": sock.getsockname()[1]})
    await stop.wait()
    server.close()
    # The stdin watcher thread may still block on read(); do not wait for it.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
