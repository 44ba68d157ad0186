"""A payment provider on loopback speaking the format of :mod:`lealta.plans.provider`."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from lealta.plans import provider as payments

SECRET = "whsec-test-payments"


class FakeProvider:
    """A payment provider on loopback: opens and cancels subscriptions, signs webhooks."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.fail = False
        self.count = 0
        self.events = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                outer.calls.append((self.path, body, dict(self.headers)))
                if outer.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                if self.path == "/subscriptions":
                    outer.count += 1
                    answer = {
                        "id": f"sub_{outer.count}",
                        "checkout_url": f"http://127.0.0.1/pay/sub_{outer.count}",
                    }
                else:
                    answer = {"ok": True}
                raw = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def webhook(
        self, kind: str, ref: str, *, at: datetime, start: datetime | None = None,
        end: datetime | None = None, amount: str = "9.90", event_id: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:  # fmt: skip
        self.events += 1
        data: dict[str, Any] = {"subscription": ref, "amount": amount, "currency": "EUR"}
        if start is not None and end is not None:
            data |= {"period_start": start.isoformat(), "period_end": end.isoformat()}
        body = orjson.dumps(
            {
                "id": event_id or f"evt_{self.events}",
                "type": kind,
                "created": at.isoformat(),
                "data": data,
            }
        )
        return body, payments.sign(SECRET, body, timestamp=int(at.timestamp()))
