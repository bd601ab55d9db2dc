"""The loopback Binance's WebSockets: the market streams, the WebSocket API with its user data stream, and the
signatures it checks (HMAC, Ed25519, RSA). A mixin of `FakeBinance`, whose state it uses."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections import Counter
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import WSMsgType, web
from Crypto.Hash import SHA256
from Crypto.PublicKey import ECC, RSA
from Crypto.Signature import eddsa, pkcs1_15

from tests.fakes.fake_binance_wire import MarketConn


class Sockets:
    """WebSocket endpoints and signature checks of the fake."""

    # ------------------------------------------------------------ market-stream WebSocket

    def _refusing(self) -> bool:
        return time.monotonic() < self._refuse_ws_until

    async def _market_ws(self, request: web.Request) -> web.StreamResponse:
        if self._refusing():
            return web.Response(status=503, text="Service Unavailable")
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.market_connections_opened += 1
        streams = request.query.get("streams", "")
        conn = MarketConn(ws, {s for s in streams.split("/") if s})
        self.market_conns.append(conn)
        aged = self._age_limit(ws)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    req = orjson.loads(msg.data)
                    method, rid = req.get("method"), req.get("id")
                except (orjson.JSONDecodeError, AttributeError):
                    await ws.send_str('{"error":{"code":2,"msg":"Invalid request"},"id":null}')
                    continue
                self.control_messages.append(req)
                params = req.get("params") or []
                if method == "SUBSCRIBE":
                    conn.streams.update(params)
                    await ws.send_bytes(orjson.dumps({"result": None, "id": rid}))
                elif method == "UNSUBSCRIBE":
                    conn.streams.difference_update(params)
                    await ws.send_bytes(orjson.dumps({"result": None, "id": rid}))
                elif method == "LIST_SUBSCRIPTIONS":
                    await ws.send_bytes(orjson.dumps({"result": sorted(conn.streams), "id": rid}))
                else:
                    await ws.send_bytes(orjson.dumps({"error": {"code": 1, "msg": "Invalid value type"}, "id": rid}))
        finally:
            if aged is not None:
                aged.cancel()
            if conn in self.market_conns:
                self.market_conns.remove(conn)
        return ws

    def _broadcast(self, stream: str, data: dict[str, Any]) -> None:
        frame: str | None = None
        for conn in self.market_conns:
            if stream in conn.streams and not conn.ws.closed:
                if frame is None:
                    frame = orjson.dumps({"stream": stream, "data": data}).decode()
                self._send(conn.ws, frame)

    def _send(self, ws: web.WebSocketResponse, frame: str, stamp: str | None = None) -> None:
        """Queue a frame for `ws`; one writer task per socket keeps frames in order."""
        q = self._outboxes.get(ws)
        if q is None:
            q = self._outboxes[ws] = asyncio.Queue()
            self._writers.add(asyncio.ensure_future(self._writer(ws, q)))
        q.put_nowait((frame, stamp))

    async def _writer(self, ws: web.WebSocketResponse, q: asyncio.Queue) -> None:
        try:
            while not ws.closed:
                frame, stamp = await q.get()
                if stamp is not None:
                    self.trade_event_sent_at[stamp] = time.perf_counter()
                await ws.send_str(frame)
        except Exception:  # noqa: BLE001 - the peer is gone; a real exchange just drops it
            pass
        finally:
            self._outboxes.pop(ws, None)

    # ------------------------------------------------------------ WebSocket API (user data stream)

    async def _ws_api(self, request: web.Request) -> web.StreamResponse:
        if self._refusing():
            return web.Response(status=503, text="Service Unavailable")
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.ws_api_conns.add(ws)
        self.ws_api_connections_opened += 1
        aged = self._age_limit(ws)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    req = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    continue
                rid, method, params = req.get("id"), req.get("method"), req.get("params") or {}
                if method == "userDataStream.subscribe.signature":
                    err = self._check_ws_signature(params)
                    if err is not None:
                        await ws.send_bytes(orjson.dumps({"id": rid, "status": 400, "error": err}))
                        continue
                    sub = next(self._sub_ids)
                    self.user_subs.setdefault(ws, set()).add(sub)
                    self.user_subscriptions_opened += 1
                    await ws.send_bytes(orjson.dumps({"id": rid, "status": 200, "result": {"subscriptionId": sub}}))
                elif method == "userDataStream.unsubscribe":
                    subs = self.user_subs.get(ws, set())
                    sub = params.get("subscriptionId")
                    await ws.send_bytes(orjson.dumps({"id": rid, "status": 200, "result": {}}))
                    if sub in subs:  # user-data-stream.md, "Event Stream Terminated"
                        subs.discard(sub)
                        await ws.send_str(self._terminated(sub))
                else:
                    await ws.send_bytes(orjson.dumps({"id": rid, "status": 400,
                                                      "error": {"code": -1100, "msg": f"Unknown method {method}"}}))
        finally:
            if aged is not None:
                aged.cancel()
            self.ws_api_conns.discard(ws)
            self.user_subs.pop(ws, None)
        return ws

    def _check_ws_signature(self, params: dict[str, Any]) -> dict[str, Any] | None:
        if params.get("apiKey") != self.api_key:
            return {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
        unsigned = {k: v for k, v in params.items() if k != "signature"}
        if not self._signature_ok(urlencode(dict(sorted(unsigned.items()))), str(params.get("signature", ""))):
            return {"code": -1022, "msg": "Signature for this request is not valid."}
        # rest-api.md / web-socket-api.md, "Timing security": recvWindow defaults to 5000 ms; a timestamp more
        # than 1 s ahead of the server is refused.
        ts, window = int(params.get("timestamp", 0)), float(params.get("recvWindow", 5000))
        if ts >= self.server_ms() + 1000 or self.server_ms() - ts > window:
            return {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
        return None

    # ------------------------------------------------------------ API keys (HMAC, Ed25519, RSA)

    def use_public_key(self, pem: str | None) -> None:
        """Verify signatures with this Ed25519 or RSA public key (PEM) instead of the HMAC secret (None: HMAC).

        rest-api.md, "SIGNED Endpoint security": HMAC signatures are hex and "not case-sensitive"; RSA
        (RSASSA-PKCS1-v1_5 with SHA-256) and Ed25519 signatures are base64 and case-sensitive; the signed
        payload is the query string concatenated with the body, percent-encoded as sent."""
        self.key_type = "hmac"
        self.public_key: Any = None
        if pem is not None:
            try:
                self.public_key, self.key_type = ECC.import_key(pem), "ed25519"
            except ValueError:
                self.public_key, self.key_type = RSA.import_key(pem), "rsa"
        self.signatures_checked: Counter[str] = Counter()

    def _signature_ok(self, payload: str, sig: str) -> bool:
        kind = self.key_type
        self.signatures_checked[kind] += 1
        if kind == "hmac":
            good = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
            return hmac.compare_digest(good, sig.lower())
        try:
            raw = base64.b64decode(sig, validate=True)
            if kind == "ed25519":
                eddsa.new(self.public_key, "rfc8032").verify(payload.encode(), raw)
            else:
                pkcs1_15.new(self.public_key).verify(SHA256.new(payload.encode()), raw)
        except (ValueError, TypeError):
            return False
        return True

    def _user_event(self, event: dict[str, Any]) -> None:
        if self.user_event_hook is not None:
            self.user_event_hook(event)
        if self.mute_user_stream:
            return
        for ws, subs in list(self.user_subs.items()):
            if ws.closed:
                continue
            for sub in subs:
                stamp = event["c"] if event.get("x") == "TRADE" else None
                self._send(ws, orjson.dumps({"subscriptionId": sub, "event": event}).decode(), stamp)
