#!/usr/bin/python3
"""A test SMTP server for canaryd's notification tests, on aiosmtpd (Debian: python3-aiosmtpd).

Writes every message it accepts to MAILDIR as one file (the raw message, envelope first as
X-Envelope-* lines), atomically (write, then rename), and prints READY once it accepts
connections. Optional STARTTLS with the given certificate and key, and AUTH PLAIN/LOGIN with
one user. Stops on SIGTERM or when its stdin closes.

    /usr/bin/python3 tests/support/smtp_server.py --port P --maildir D \
        [--starttls CERT KEY] [--auth USER:PASS]
"""

import argparse
import os
import signal
import ssl
import sys
import threading
import warnings
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Maildir:
    def __init__(self, path):
        self.path = path
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            name = "%d-%06d.eml" % (time.time_ns(), self.count)
        head = "X-Envelope-From: %s\r\nX-Envelope-To: %s\r\n" % (
            envelope.mail_from,
            ",".join(envelope.rcpt_tos),
        )
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8")
        tmp = os.path.join(self.path, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(head.encode("ascii") + data)
        os.rename(tmp, os.path.join(self.path, name))
        return "250 Message accepted for delivery"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        if (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        ):
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    return check


def main():
    # aiosmtpd 1.4 warns about its own deprecated attribute when AUTH succeeds.
    warnings.filterwarnings("ignore", message="Session.login_data")
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--auth", metavar="USER:PASS")
    args = p.parse_args()

    os.makedirs(args.maildir, exist_ok=True)
    params = {}
    if args.starttls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.starttls[0], args.starttls[1])
        params["tls_context"] = ctx
        params["require_starttls"] = True
    if args.auth:
        user, _, password = args.auth.partition(":")
        params["authenticator"] = authenticator(user, password)
        params["auth_required"] = True
        params["auth_require_tls"] = bool(args.starttls)

    controller = Controller(
        Maildir(args.maildir), hostname="127.0.0.1", port=args.port, **params
    )
    controller.start()
    print("READY", flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    controller.stop()


if __name__ == "__main__":
    main()
