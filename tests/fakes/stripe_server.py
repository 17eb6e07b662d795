"""A small fake of Stripe's API on loopback, for the real `stripe` SDK pointed at it.

It speaks the documented shapes of what TokenHub uses and nothing more:

    POST /v1/checkout/sessions            form-encoded, as the SDK sends it (`line_items[0][price_data][currency]=usd`)
    GET  /v1/checkout/sessions/{id}       `expand[]=payment_intent.latest_charge` supported
    GET  /v1/payment_intents/{id}         with the metadata given as `payment_intent_data[metadata]`
    GET  /pay/{id}                        the hosted checkout page a customer is redirected to (HTML)

Requests need `Authorization: Bearer <secret key>`; errors come in Stripe's shape
`{"error": {"type", "message", "param"}}`. What Stripe does later (the customer pays, a wallet
payment fails, a refund) the tests drive in Python: `pay(session_id)`, `fail(session_id)`,
and `event(type, obj)` builds the event Stripe would deliver (tests sign and post it).

No pytest here.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

import orjson

from .base import Receive, RecordedRequest, Scope, Send, read_body

__all__ = ["FakeStripe", "unflatten"]


def unflatten(pairs: list[tuple[str, str]]) -> dict:
    """Stripe's form encoding back into nested dicts and lists: `a[b][0][c]=v`."""
    root: dict = {}
    for key, value in pairs:
        parts = [key.split("[", 1)[0]] + [p.rstrip("]") for p in key.split("[")[1:]]
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt: Any = value if last else ({} if not parts[i + 1].isdigit() and parts[i + 1] != "" else [])
            if isinstance(node, list):
                index = int(part) if part.isdigit() else len(node)
                while len(node) <= index:
                    node.append(None)
                if node[index] is None or last:
                    node[index] = nxt
                node = node[index]
            else:
                if part not in node or last:
                    node[part] = nxt
                node = node[part]
    return root


def _id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


class FakeStripe:
    def __init__(self, *, api_key: str = "sk_test_tokenhub") -> None:
        self.api_key = api_key
        self.url = ""  # set once the server runs
        self.sessions: dict[str, dict] = {}
        self.intents: dict[str, str] = {}  # payment intent id -> its session id
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()

    # --- what Stripe does on its side, driven by tests --------------------------------------

    def pay(self, session_id: str, *, async_pending: bool = False) -> dict:
        """The customer completes checkout: paid (card), or pending for a wallet that settles later."""
        with self._lock:
            session = self.sessions[session_id]
            intent_id, charge_id = _id("pi"), _id("ch")
            session["status"] = "complete"
            session["payment_status"] = "unpaid" if async_pending else "paid"
            session["payment_intent"] = intent_id
            self.intents[intent_id] = session_id
            session["_charge"] = {
                "id": charge_id,
                "object": "charge",
                "amount": session["amount_total"],
                "amount_refunded": 0,
                "currency": session["currency"],
                "payment_intent": intent_id,
                "paid": not async_pending,
                "refunded": False,
                "receipt_url": f"{self.url}/receipts/{charge_id}",
            }
            return self.session_view(session_id)

    def settle(self, session_id: str, *, is_paid: bool) -> dict:
        """A pending wallet payment succeeds or fails."""
        with self._lock:
            session = self.sessions[session_id]
            session["payment_status"] = "paid" if is_paid else "unpaid"
            session["_charge"]["paid"] = is_paid
            return self.session_view(session_id)

    def charge(self, session_id: str, **changes: Any) -> dict:
        """The charge behind a paid session (as `charge.*` events carry it), with changes applied."""
        with self._lock:
            charge = self.sessions[session_id]["_charge"]
            charge.update(changes)
            return dict(charge)

    def session_view(self, session_id: str, *, expand: tuple[str, ...] = ()) -> dict:
        session = {k: v for k, v in self.sessions[session_id].items() if not k.startswith("_")}
        if "payment_intent.latest_charge" in expand and session.get("payment_intent"):
            charge = self.sessions[session_id]["_charge"]
            session["payment_intent"] = {**self._intent(session_id), "latest_charge": dict(charge)}
        return session

    def _intent(self, session_id: str) -> dict:
        session = self.sessions[session_id]
        return {
            "id": session["payment_intent"],
            "object": "payment_intent",
            "amount": session["amount_total"],
            "currency": session["currency"],
            "status": "succeeded" if session["payment_status"] == "paid" else "processing",
            "metadata": session["_intent_metadata"],
            "latest_charge": session["_charge"]["id"],
        }

    @staticmethod
    def event(event_type: str, obj: dict, *, event_id: str | None = None) -> dict:
        return {
            "id": event_id or _id("evt"),
            "object": "event",
            "api_version": "2025-01-27.acacia",
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "type": event_type,
            "data": {"object": obj},
        }

    # --- HTTP -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode()
        path = scope["path"]
        self.requests.append(RecordedRequest(scope["method"], path, query, headers, body, (scope.get("client") or (None, None))[1]))
        if path.startswith("/pay/"):
            await self._checkout_page(send, path.removeprefix("/pay/"))
            return
        if path.startswith("/receipts/"):
            await _send(send, 200, b"<html><body><h1>Receipt</h1></body></html>", b"text/html")
            return
        if headers.get("authorization") != f"Bearer {self.api_key}":
            await _error(send, 401, "Invalid API Key provided.", type_="invalid_request_error")
            return
        if scope["method"] == "POST" and path == "/v1/checkout/sessions":
            if "application/x-www-form-urlencoded" not in headers.get("content-type", ""):
                await _error(send, 400, "Stripe takes form-encoded bodies.")
                return
            await self._create(send, unflatten(parse_qsl(body.decode(), keep_blank_values=True)))
        elif scope["method"] == "GET" and path.startswith("/v1/checkout/sessions/"):
            session_id = path.rsplit("/", 1)[1]
            if session_id not in self.sessions:
                await _error(send, 404, f"No such checkout.session: '{session_id}'", param="session")
                return
            expand = tuple(v for k, v in parse_qsl(query) if k.startswith("expand"))
            await _json(send, 200, self.session_view(session_id, expand=expand))
        elif scope["method"] == "GET" and path.startswith("/v1/payment_intents/"):
            intent_id = path.rsplit("/", 1)[1]
            if intent_id not in self.intents:
                await _error(send, 404, f"No such payment_intent: '{intent_id}'", param="intent", type_="invalid_request_error")
                return
            await _json(send, 200, self._intent(self.intents[intent_id]))
        else:
            await _error(send, 404, f"Unrecognized request URL ({scope['method']}: {path}).")

    async def _create(self, send: Send, params: dict) -> None:
        for name in ("mode", "success_url", "line_items"):
            if not params.get(name):
                await _error(send, 400, f"Missing required param: {name}.", param=name)
                return
        if params["mode"] != "payment":
            await _error(send, 400, "Only mode=payment is faked.", param="mode")
            return
        total, currency = 0, None
        for item in params["line_items"]:
            price = item.get("price_data") or {}
            try:
                amount, quantity = int(price["unit_amount"]), int(item.get("quantity", 1))
            except (KeyError, ValueError):
                await _error(send, 400, "Invalid line_items: price_data[unit_amount] must be an integer.", param="line_items")
                return
            if amount <= 0:
                await _error(send, 400, "This value must be greater than or equal to 1.", param="line_items[0][price_data][unit_amount]")
                return
            total += amount * quantity
            currency = price.get("currency")
        methods = params.get("payment_method_types") or ["card"]
        if currency != "cny" and any(m in ("alipay", "wechat_pay") for m in methods):
            await _error(send, 400, f"The payment method types {methods} do not support currency {currency}.", param="payment_method_types")
            return
        if "wechat_pay" in methods and (params.get("payment_method_options") or {}).get("wechat_pay", {}).get("client") != "web":
            await _error(send, 400, "payment_method_options[wechat_pay][client] is required.", param="payment_method_options")
            return
        session_id = _id("cs")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": total,
            "amount_subtotal": total,
            "currency": currency,
            "payment_method_types": methods,
            "client_reference_id": params.get("client_reference_id"),
            "customer_email": params.get("customer_email"),
            "metadata": params.get("metadata") or {},
            "success_url": params["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id),
            "cancel_url": (params.get("cancel_url") or "").replace("{CHECKOUT_SESSION_ID}", session_id) or None,
            "payment_intent": None,
            "livemode": False,
            "created": int(time.time()),
            "expires_at": int(time.time()) + 86400,
            "url": f"{self.url}/pay/{session_id}",
            "_intent_metadata": (params.get("payment_intent_data") or {}).get("metadata") or {},
        }
        with self._lock:
            self.sessions[session_id] = session
        await _json(send, 200, self.session_view(session_id))

    async def _checkout_page(self, send: Send, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is None:
            await _send(send, 404, b"no such session", b"text/plain")
            return
        amount = f"{session['amount_total'] / 100:.2f} {session['currency'].upper()}"
        page = (
            f"<html><head><title>Fake Stripe Checkout</title></head><body><h1>Pay {html.escape(amount)}</h1>"
            f"<p id='session'>{html.escape(session_id)}</p>"
            f"<a id='back' href='{html.escape(session['success_url'])}'>Return to the merchant</a></body></html>"
        )
        await _send(send, 200, page.encode(), b"text/html; charset=utf-8")


async def _send(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, obj: Any) -> None:
    await _send(send, status, orjson.dumps(obj), b"application/json")


async def _error(send: Send, status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None) -> None:
    await _json(send, status, {"error": {"type": type_, "message": message, "param": param}})
