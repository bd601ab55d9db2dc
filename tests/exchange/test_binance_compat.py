"""Pins every python-binance internal that tgtrader/exchange/binance/compat.py relies on (issue 14).

compat.py is the only module that reaches into the library. Each test here states one fact about the installed
version that compat.py depends on, so an upgrade that changes any of them fails here, loudly and by name,
instead of as a silent stream or signing failure in production. When one fails: re-read compat.py's module
docstring against the new library source, adapt compat.py, then this test.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import time
from importlib.metadata import version
from typing import Any
from urllib.parse import unquote

import orjson
import pytest
from binance import AsyncClient, BinanceSocketManager
from binance.ws.constants import WSListenerState
from binance.ws.keepalive_websocket import KeepAliveWebsocket
from binance.ws.reconnecting_websocket import ReconnectingWebsocket
from binance.ws.websocket_api import WebsocketAPI
from Crypto.Hash import SHA256
from Crypto.PublicKey import ECC, RSA
from Crypto.Signature import eddsa, pkcs1_15

from tgtrader.exchange.binance import compat


def _client(**kw: Any) -> compat.TgAsyncClient:
    opts: dict[str, Any] = dict(testnet=False, rest_url="http://127.0.0.1:9/api", ws_api_url="ws://127.0.0.1:9/ws-api/v3",
                                request_timeout=3.0, recv_window_ms=5000, session_params={}, on_response=lambda r: None)
    opts.update(kw)
    return compat.new_client("key", "secret", **opts)


async def _closed(client: AsyncClient) -> None:
    await compat.close_client(client)


def test_the_version_compat_py_was_written_for() -> None:
    v = version("python-binance")
    assert v.startswith("1.0."), f"python-binance {v}: re-read compat.py against it (written for 1.0.37)"
    assert tuple(int(x) for x in v.split(".")) >= (1, 0, 37)


async def test_client_class_attributes_redirect_and_sign() -> None:
    """API_URL / WS_API_URL / REQUEST_TIMEOUT / REQUEST_RECVWINDOW on a subclass; timestamp_offset in every
    signed request; `_handle_response` is what TgAsyncClient overrides."""
    c = _client()
    try:
        assert c._create_api_uri("ping", False, "v3") == "http://127.0.0.1:9/api/v3/ping"
        assert c.ws_api._url == "ws://127.0.0.1:9/ws-api/v3"
        assert c.REQUEST_TIMEOUT == 3.0
        compat.set_clock_offset(c, 60_000)
        kwargs = c._get_request_kwargs("post", True, data={"symbol": "BTCUSDT"})
        data = dict(kwargs["data"])
        assert int(data["recvWindow"]) == 5000
        assert abs(int(data["timestamp"]) - (time.time() * 1000 + 60_000)) < 5_000
        assert compat.clock_offset(c) == 60_000
        assert "_handle_response" in vars(compat.TgAsyncClient)
        assert "response" in inspect.signature(AsyncClient._handle_response).parameters
        assert hasattr(c, "ws_future") and isinstance(c.ws_future, WebsocketAPI)
        compat.redirect_rest(c, "http://127.0.0.2:9/api", "http://127.0.0.2:9/sapi")  # doctor's redirect
        assert c._create_api_uri("ping", False, "v3") == "http://127.0.0.2:9/api/v3/ping"
        assert c._create_margin_api_uri("account/apiRestrictions").startswith("http://127.0.0.2:9/sapi/v1/")
    finally:
        await _closed(c)


async def test_ws_api_internals() -> None:
    """The WS-API connection: `_handle_message` (wrapped), MAX_RECONNECTS, ws / ws_state / _handle_read_loop,
    the subscription queues, and the constructor arguments replace_ws_api copies."""
    c = _client()
    try:
        api = c.ws_api
        assert isinstance(api, WebsocketAPI)
        for name in ("ws", "ws_state", "_handle_read_loop", "_subscription_queues", "_url", "_tld", "_https_proxy",
                     "_queue", "MAX_RECONNECTS"):
            assert hasattr(api, name), name
        assert callable(api.unregister_subscription_queue) and callable(api.register_subscription_queue)
        params = inspect.signature(WebsocketAPI.__init__).parameters
        assert {"url", "tld", "https_proxy"} <= set(params)
        assert WSListenerState.STREAMING and WSListenerState.EXITING
    finally:
        await _closed(c)


async def test_the_library_drops_a_ws_api_server_shutdown_so_compat_must_catch_it() -> None:
    """web-socket-api.md's serverShutdown has no id and no subscriptionId: the library's handler logs it as an
    unknown message and returns None (nothing reaches any queue). compat.harden_ws_api looks for it first."""
    c = _client()
    try:
        frame = orjson.dumps({"event": {"e": "serverShutdown", "E": 1}}).decode()
        assert WebsocketAPI._handle_message(c.ws_api, frame) is None
        seen: list[int] = []
        compat.harden_ws_api(c, lambda: seen.append(1))
        assert c.ws_api._handle_message(frame) is None and seen == [1]
        assert c.ws_api._handle_message("not json") is None  # dropped, not raised (the read loop survives)
        assert c.ws_api.MAX_RECONNECTS == 0
        # a user event for a registered subscription still goes to its queue
        q: asyncio.Queue = asyncio.Queue()
        c.ws_api.register_subscription_queue(7, q)
        c.ws_api._handle_message(orjson.dumps({"subscriptionId": 7, "event": {"e": "executionReport"}}).decode())
        assert q.get_nowait() == {"e": "executionReport"}
    finally:
        await _closed(c)


async def test_replace_ws_api_installs_a_fresh_hardened_connection() -> None:
    c = _client()
    try:
        old = c.ws_api
        returned = compat.replace_ws_api(c, lambda: None)
        assert returned is old and c.ws_api is not old and c.ws_api._url == old._url
        assert c.ws_api.MAX_RECONNECTS == 0 and c.ws_api.ws is None
        assert await compat.retire_ws_api(old, None) == []
    finally:
        await _closed(c)


async def test_socket_manager_internals() -> None:
    """STREAM_URL / STREAM_TESTNET_URL; `_conns` caches sockets by path (so an owned socket is taken out of
    it, and a user socket must be forgotten before a new one is asked for)."""
    c = _client()
    try:
        bsm = compat.new_socket_manager(c, queue_size=10, stream_url="ws://127.0.0.1:9/", testnet=False)
        assert bsm.STREAM_URL == "ws://127.0.0.1:9/" and isinstance(BinanceSocketManager.STREAM_TESTNET_URL, str)
        first = bsm.user_socket()
        assert isinstance(first, KeepAliveWebsocket) and bsm.user_socket() is first  # cached
        compat.forget_socket(bsm, first)
        assert bsm.user_socket() is not first
        sock = bsm.multiplex_socket(["btcusdt@bookTicker"])
        assert sock in bsm._conns.values()
        compat._forget(bsm, sock)
        assert sock not in bsm._conns.values()
        compat.set_stream_path(sock, {"ethusdt@trade", "btcusdt@trade"})
        assert sock._path == "streams=btcusdt@trade/ethusdt@trade"
    finally:
        await _closed(c)


def test_reconnecting_websocket_internals() -> None:
    """The read loop hands each frame to `_handle_message` and queues a truthy result (streams.py parses ticks
    there and returns markers); MAX_RECONNECTS, ws, ws_state, _queue exist."""
    src = inspect.getsource(ReconnectingWebsocket._read_loop)
    assert "self._handle_message(" in src and "self._queue.put(" in src
    for name in ("MAX_RECONNECTS", "TIMEOUT", "_handle_message", "recv", "__aexit__"):
        assert hasattr(ReconnectingWebsocket, name), name


def test_user_socket_internals() -> None:
    """The user socket subscribes on `client.ws_api` when it connects and routes events through its `_queue`;
    `_timer`, `_subscription_id` and `_unsubscribe_from_user_data_stream` exist."""
    src = inspect.getsource(KeepAliveWebsocket._before_connect)
    assert "self._client.ws_api.register_subscription_queue" in src
    assert "_subscribe_to_user_data_stream" in src
    assert callable(KeepAliveWebsocket._unsubscribe_from_user_data_stream)
    init = inspect.getsource(KeepAliveWebsocket.__init__)
    assert "self._timer" in init and "self._subscription_id" in init


def _verify(kind: str, key: Any, payload: str, sig: str) -> None:
    raw = base64.b64decode(sig)
    if kind == "ed25519":
        eddsa.new(key.public_key(), "rfc8032").verify(payload.encode(), raw)
    else:
        pkcs1_15.new(key.public_key()).verify(SHA256.new(payload.encode()), raw)


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
async def test_signing_with_private_key_and_is_rsa(kind: str) -> None:
    """python-binance signs with `PRIVATE_KEY` (Ed25519, or RSASSA-PKCS1-v1_5/SHA-256 if `_is_rsa`), base64,
    URI-encoded for REST; the WS-API signature is over the urlencoded params, not URI-encoded."""
    key = ECC.generate(curve="Ed25519") if kind == "ed25519" else RSA.generate(2048)
    pem = key.export_key(format="PEM") if kind == "ed25519" else key.export_key(pkcs=8).decode()
    c = _client(key_type=kind, private_key=pem)
    try:
        assert compat.signing_key_type(c) == kind and c.API_SECRET is None
        data = {"symbol": "BTCUSDT", "side": "BUY", "timestamp": 1}
        rest_payload = "side=BUY&symbol=BTCUSDT&timestamp=1"  # REST: the library sorts the parameters
        _verify(kind, key, rest_payload, unquote(c._generate_signature(dict(data))))
        ws_payload = "symbol=BTCUSDT&side=BUY&timestamp=1"  # WS-API: in the order given (the caller sorts)
        _verify(kind, key, ws_payload, c._generate_ws_api_signature(dict(data)))
    finally:
        await _closed(c)


def test_the_librarys_own_key_loader_mistakes_an_encrypted_ed25519_key_for_rsa() -> None:
    """Why compat installs the key itself: `_init_private_key` takes any PEM over 120 characters for RSA and
    passes no passphrase to the Ed25519 import."""
    key = ECC.generate(curve="Ed25519")
    encrypted = key.export_key(format="PEM", passphrase="pw", protection="PBKDF2WithHMAC-SHA512AndAES256-CBC")
    src = inspect.getsource(AsyncClient._init_private_key)
    assert "len(private_key) > 120" in src and "ECC.import_key(private_key)" in src
    assert len(encrypted) > 120
    assert compat.load_signing_key("ed25519", encrypted, "pw").curve == "Ed25519"
