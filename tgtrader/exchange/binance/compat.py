"""Every use of python-binance internals, in this one module. Pinned to python-binance 1.0.37.

pyproject accepts >=1.0.37,<1.1, but everything below was read in the 1.0.37 source (facts about the library
are in shared/notes/offline-clients.md): re-read it against the new source before moving the pin. The other
modules of the adapter call the small functions here and never reach into the library themselves.

Internals used, and why:
- `AsyncClient._handle_response`, overridden by TgAsyncClient: every HTTP answer is shown to the adapter (its
  `X-MBX-USED-WEIGHT-1M` header feeds the rate limiter), and the JSON body of an error answer is kept as
  `exc.payload` (a failed cancelReplace says which half failed only there).
- The client class attributes `API_URL`, `WS_API_URL`, `REQUEST_TIMEOUT` and `REQUEST_RECVWINDOW`, set on a
  subclass: endpoint overrides and timeouts. `testnet=True` is only passed when there is no override,
  because the library's testnet flag replaces API_URL on every call.
- `AsyncClient.API_URL` / `MARGIN_API_URL` on an instance: `tgtrader doctor` redirects a plain client.
- `AsyncClient.timestamp_offset`: the clock offset (ms) the library adds to every signed request; set by
  sync_time, read by health.
- `AsyncClient.PRIVATE_KEY` and `_is_rsa`: with an Ed25519 or RSA key, python-binance signs REST and WS-API
  requests with `PRIVATE_KEY` (RSASSA-PKCS1-v1_5 / SHA-256 if `_is_rsa`, else Ed25519; base64) instead of
  HMAC. They are set here (`install_signing_key`) rather than through the constructor's `private_key=`, whose
  loader guesses the kind from the PEM's length (over 120 characters: RSA), so an encrypted Ed25519 key is
  taken for RSA, and passes no passphrase to the Ed25519 import.
- `AsyncClient.ws_api`, the WebSocket-API connection the user data stream rides on: its `_handle_message` is
  wrapped so that an unreadable frame is dropped instead of ending the read loop; `MAX_RECONNECTS = 0`, so
  that the adapter, not the library, reconnects; `ws`, `ws_state` and `_handle_read_loop` tell whether it is
  streaming, still (re)connecting or dead; `unregister_subscription_queue` forgets a dropped user socket's
  subscription; on close, `ws_state = EXITING` and `ws.close()`.
- `AsyncClient.ws_future`, the futures WS-API connection every client creates: closed on close.
- `WebsocketAPI(url=..., tld=..., https_proxy=...)` and its `_url`, `_tld`, `_https_proxy`: on serverShutdown
  or before the 24 h cut, a second WS-API connection is built next to the old one and set as `client.ws_api`,
  so the user stream is subscribed again on it before the old one is closed (`replace_ws_api`); the old user
  socket's `_queue` is drained then (events it received meanwhile are not lost), its subscription queue
  unregistered from the OLD connection (never unsubscribed through the client: that would reach the new one)
  and the old connection closed (`retire_ws_api`). `ws_api.ws` tells one connection from the next.
- The user socket's `_queue` also takes a wake-up marker (`wake_user_socket`): the drain task sees a
  serverShutdown at once instead of after its next timeout.
- `BinanceSocketManager.STREAM_URL` / `STREAM_TESTNET_URL`: the market-stream endpoint.
- `BinanceSocketManager._conns`, the manager's socket cache: the adapter owns the lifecycle of its market and
  user sockets, so they are taken out of it.
- `ReconnectingWebsocket._path`: rewritten so that a (re)connect comes back with the current stream list.
- `ReconnectingWebsocket._handle_message`: replaced per market socket, so that ticks are parsed inside the
  library's read loop (see streams.py).
- `ReconnectingWebsocket.MAX_RECONNECTS = 0` on market sockets and on the WS-API: on a drop the library's read
  loop reports the error and ends at once; the adapter reopens on its own schedule, bounded by
  stream_reconnect_cap_s.
- `ReconnectingWebsocket.ws` and `ws_state`: SUBSCRIBE/UNSUBSCRIBE go out on the open connection (`ws.send`),
  and a socket is closed without waiting out its 10 s read timeout (`ws_state = EXITING`, `ws.close()`,
  `__aexit__`).
- The user socket (a `KeepAliveWebsocket` on the WS-API): `_timer` (its keepalive timer, cancelled),
  `_subscription_id` (unregistered from the WS-API, then cleared) and `_unsubscribe_from_user_data_stream()`
  (sent on close).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from binance import AsyncClient, BinanceSocketManager
from binance.exceptions import BinanceAPIException
from binance.ws.constants import WSListenerState
from binance.ws.reconnecting_websocket import ReconnectingWebsocket
from binance.ws.websocket_api import WebsocketAPI
from Crypto.PublicKey import ECC, RSA

from tgtrader.exchange.binance.parse import _report_bad


class TgAsyncClient(AsyncClient):
    """AsyncClient that shows every HTTP answer to the adapter (weight header) and keeps error bodies."""

    tg_on_response: Callable[[aiohttp.ClientResponse], None] | None = None

    async def _handle_response(self, response: aiohttp.ClientResponse):  # type: ignore[override]
        hook = self.tg_on_response
        if hook is not None:
            hook(response)
        if not str(response.status).startswith("2"):
            text = await response.text()
            exc = BinanceAPIException(response, response.status, text)
            try:
                exc.payload = orjson.loads(text)  # type: ignore[attr-defined]
            except orjson.JSONDecodeError:
                exc.payload = None  # type: ignore[attr-defined]
            raise exc
        return await super()._handle_response(response)


# ---------------------------------------------------------------- client


KEY_TYPES = ("hmac", "ed25519", "rsa")


def load_signing_key(key_type: str, pem: str, passphrase: str | None = None) -> Any:
    """An Ed25519 or RSA private key (PEM; Binance: "Only PKCS#8 keys are supported" for RSA) as the object
    python-binance signs with. Raises ValueError naming the kind, never quoting the key."""
    try:
        if key_type == "ed25519":
            key = ECC.import_key(pem, passphrase=passphrase)
            if key.curve != "Ed25519":
                raise ValueError("wrong curve")
        elif key_type == "rsa":
            key = RSA.import_key(pem, passphrase=passphrase)
        else:
            raise ValueError("unknown kind")
        if not key.has_private():
            raise ValueError("public key")
    except (ValueError, IndexError, TypeError):
        raise ValueError(f"not a readable {key_type.upper() if key_type == 'rsa' else 'Ed25519'} private key "
                         "(PEM; check the file, and the passphrase if it is encrypted)") from None
    return key


def install_signing_key(client: AsyncClient, key_type: str, key: Any) -> None:
    """Make every signed REST and WS-API request of `client` carry a signature by `key` (see module docstring).

    rest-api.md, "SIGNED Endpoint security": RSA and Ed25519 signatures are base64 and case-sensitive; the
    payload is the query string concatenated with the body, percent-encoded (python-binance does that)."""
    client.PRIVATE_KEY = key
    client._is_rsa = key_type == "rsa"


def signing_key_type(client: AsyncClient) -> str:
    """"ed25519", "rsa" or "hmac": what the client signs with."""
    if getattr(client, "PRIVATE_KEY", None) is None:
        return "hmac"
    return "rsa" if getattr(client, "_is_rsa", False) else "ed25519"


def new_client(api_key: str, api_secret: str, *, testnet: bool, rest_url: str | None, ws_api_url: str | None,
               request_timeout: float, recv_window_ms: int, session_params: dict[str, Any],
               on_response: Callable[[aiohttp.ClientResponse], None], key_type: str = "hmac",
               private_key: str | None = None, private_key_pass: str | None = None) -> TgAsyncClient:
    """A client on the given endpoints whose every HTTP answer goes to `on_response` first; it signs with the
    HMAC secret, or (key_type "ed25519" / "rsa") with `private_key` (PEM)."""
    attrs: dict[str, Any] = {"REQUEST_TIMEOUT": request_timeout, "REQUEST_RECVWINDOW": recv_window_ms}
    if rest_url:
        attrs["API_URL"] = rest_url
    if ws_api_url:
        attrs["WS_API_URL"] = ws_api_url
    cls = type("TgBinanceClient", (TgAsyncClient,), attrs)
    asymmetric = key_type != "hmac"
    key = load_signing_key(key_type, private_key or "", private_key_pass) if asymmetric else None
    client = cls(api_key, None if asymmetric else api_secret, testnet=testnet, session_params=session_params)
    if key is not None:
        install_signing_key(client, key_type, key)
    client.tg_on_response = on_response
    return client


def redirect_rest(client: AsyncClient, api_url: str, sapi_url: str) -> None:
    """Point an existing client's REST (`API_URL`) and SAPI (`MARGIN_API_URL`) at other hosts (doctor)."""
    client.API_URL = api_url
    client.MARGIN_API_URL = sapi_url


def set_clock_offset(client: AsyncClient, offset_ms: int) -> int:
    """Make every signed request carry Binance's time: our clock + `offset_ms`."""
    client.timestamp_offset = offset_ms
    return client.timestamp_offset


def clock_offset(client: AsyncClient) -> int:
    return client.timestamp_offset


def _is_server_shutdown(msg: Any) -> bool:
    """web-socket-api.md, "Connection events": {"event": {"e": "serverShutdown", "E": ...}} (no subscriptionId).
    The library logs it as an "unknown message" and drops it, so it is looked for in the raw frame."""
    if isinstance(msg, bytes):
        if b"serverShutdown" not in msg:
            return False
    elif not isinstance(msg, str) or "serverShutdown" not in msg:
        return False
    try:
        parsed = orjson.loads(msg)
    except orjson.JSONDecodeError:
        return False
    event = parsed.get("event") if isinstance(parsed, dict) else None
    return isinstance(event, dict) and event.get("e") == "serverShutdown" and "subscriptionId" not in parsed


def harden_ws_api(client: AsyncClient, on_shutdown: Callable[[], None] | None = None) -> None:
    """Drop unreadable WebSocket-API frames instead of letting them end the library's read loop, and report
    a `serverShutdown` on this connection to `on_shutdown`.

    python-binance's `_handle_message` raises on invalid JSON (and on an error reply for an unknown request
    id); its read loop then stops for good, silently taking the user data stream with it. One bad frame is
    not worth a reconnect and a reconciliation, so it is logged and skipped.
    """
    ws_api = client.ws_api
    original = ws_api._handle_message

    def handle(msg: Any) -> Any:
        try:
            if on_shutdown is not None and _is_server_shutdown(msg):
                if client.ws_api is ws_api:  # a replaced connection's late notice changes nothing
                    on_shutdown()
                return None
            return original(msg)
        except Exception as exc:  # noqa: BLE001 - see docstring
            _report_bad("WebSocket-API frame", f"{type(exc).__name__}: {exc}")
            return None

    ws_api._handle_message = handle
    # The user stream reconnects on the adapter's schedule too (see open_market_socket): after a drop the
    # library's read loop ends at once and _user_loop resubscribes, which reopens the connection.
    ws_api.MAX_RECONNECTS = 0


def replace_ws_api(client: AsyncClient, on_shutdown: Callable[[], None] | None = None) -> WebsocketAPI:
    """Give the client a fresh (not yet connected) WS-API connection on the same endpoint; return the old one,
    which keeps running until `retire_ws_api`. The next WS-API request (a user-stream subscribe) connects it."""
    old = client.ws_api
    new = WebsocketAPI(url=old._url, tld=getattr(old, "_tld", "com"), https_proxy=getattr(old, "_https_proxy", None))
    client.ws_api = new
    harden_ws_api(client, on_shutdown)
    return old


async def retire_ws_api(old: WebsocketAPI, sock: Any) -> list[Any]:
    """Close a replaced WS-API connection and forget the user socket subscribed on it; returns the events that
    socket had received but nobody had read yet (in order). Never raises."""
    pending: list[Any] = []
    if sock is not None:
        timer = getattr(sock, "_timer", None)
        if timer is not None:
            timer.cancel()
            sock._timer = None
        sub = getattr(sock, "_subscription_id", None)
        if sub is not None:
            old.unregister_subscription_queue(sub)  # on the OLD connection; it dies with it on Binance's side
        sock._subscription_id = None
        queue = getattr(sock, "_queue", None)
        while queue is not None and not queue.empty():
            pending.append(queue.get_nowait())
    old.ws_state = WSListenerState.EXITING
    try:
        if old.ws is not None:
            await asyncio.wait_for(old.ws.close(), timeout=2)
        await asyncio.wait_for(old.close(), timeout=5)
    except Exception:  # noqa: BLE001 - closing a connection the server is shutting down may fail
        pass
    return pending


def forget_socket(bsm: BinanceSocketManager | None, sock: Any) -> None:
    """Take a socket out of the manager's cache, so that the next `user_socket()` is a new one."""
    if bsm is not None and sock is not None:
        _forget(bsm, sock)


def ws_api_connection(client: AsyncClient) -> object | None:
    """The WS-API's current connection object (a new one after every (re)connect), or None."""
    return client.ws_api.ws


def wake_user_socket(sock: Any, marker: dict[str, Any]) -> None:
    """Put `marker` into the user socket's queue so a task waiting in its recv() returns at once."""
    queue = getattr(sock, "_queue", None)
    if queue is not None:
        queue.put_nowait(marker)


async def close_client(client: AsyncClient) -> None:
    """Close the WS-API connection, the HTTP session and the futures WS-API; never raises."""
    ws_api = client.ws_api
    if ws_api is not None and ws_api.ws is not None:
        ws_api.ws_state = WSListenerState.EXITING
        try:
            await ws_api.ws.close()
        except Exception:  # noqa: BLE001
            pass
    try:
        await asyncio.wait_for(client.close_connection(), timeout=5)
    except (TimeoutError, Exception):  # noqa: BLE001
        pass
    try:
        await client.ws_future.close()
    except Exception:  # noqa: BLE001
        pass


# ---------------------------------------------------------------- market sockets


def new_socket_manager(client: AsyncClient, *, queue_size: int, stream_url: str | None,
                       testnet: bool) -> BinanceSocketManager:
    bsm = BinanceSocketManager(client, max_queue_size=queue_size)
    if stream_url:
        bsm.STREAM_URL = stream_url
    elif testnet:
        bsm.STREAM_URL = bsm.STREAM_TESTNET_URL
    return bsm


def _forget(bsm: BinanceSocketManager, sock: ReconnectingWebsocket) -> None:
    """Take a socket out of the manager's cache (the adapter owns its lifecycle)."""
    for key, value in list(bsm._conns.items()):
        if value is sock:
            del bsm._conns[key]


async def open_market_socket(bsm: BinanceSocketManager, streams: list[str],
                             handler: Callable[[Any], Any]) -> ReconnectingWebsocket:
    """Connect a combined-stream socket whose raw frames go to `handler` inside the library's read loop."""
    sock = bsm.multiplex_socket(streams)
    # we own the lifecycle (the path changes at run time), so don't leave it in the manager's cache
    _forget(bsm, sock)
    # ...and its reconnects: on a drop the library's read loop reports the error and ends at once
    # (BinanceWebsocketUnableToConnect, then ReadLoopClosed), and _market_loop opens a fresh socket on its
    # own bounded schedule. A library reconnect could also revive a socket we had just closed (its
    # connect() overwrites the EXITING state), leaving a connection nobody reads.
    sock.MAX_RECONNECTS = 0
    sock._handle_message = handler  # ticks go to the sink from the read loop
    await sock.connect()
    return sock


def set_stream_path(sock: ReconnectingWebsocket, streams: set[str]) -> None:
    """Make the library's (re)connects of `sock` come back with these streams."""
    sock._path = "streams=" + "/".join(sorted(streams))


def is_streaming(sock: ReconnectingWebsocket) -> bool:
    return sock.ws is not None and sock.ws_state == WSListenerState.STREAMING


async def send_text(sock: ReconnectingWebsocket, text: str) -> None:
    """Send a message on the socket's open connection (raises if it is gone)."""
    await sock.ws.send(text)


async def close_socket(sock: Any) -> None:
    """Close a library socket without waiting out its 10 s read timeout."""
    if sock is None:
        return
    try:
        sock.ws_state = WSListenerState.EXITING
        if sock.ws is not None:
            await sock.ws.close()
        await asyncio.wait_for(sock.__aexit__(None, None, None), timeout=5)
    except Exception:  # noqa: BLE001 - closing a broken socket may fail; it is gone either way
        pass


# ---------------------------------------------------------------- user data stream (WS-API)


async def drop_user_socket(bsm: BinanceSocketManager | None, client: AsyncClient | None, sock: Any,
                           unsubscribe: bool) -> None:
    """Forget a user-data socket: out of the manager's cache, keepalive timer stopped, its subscription queue
    unregistered from the WS-API, and (`unsubscribe`) the subscription ended on Binance's side if it can be."""
    if bsm is not None:
        _forget(bsm, sock)
    timer = getattr(sock, "_timer", None)
    if timer is not None:
        timer.cancel()
        sock._timer = None
    sub = getattr(sock, "_subscription_id", None)
    if sub is not None and client is not None:
        client.ws_api.unregister_subscription_queue(sub)
    if unsubscribe and sub is not None:
        try:
            await asyncio.wait_for(sock._unsubscribe_from_user_data_stream(), timeout=2)
        except Exception:  # noqa: BLE001 - the connection may be gone already
            pass
    sock._subscription_id = None


async def ws_api_settled(client: AsyncClient, timeout: float = 15.0) -> None:
    """Wait until the WS-API connection is streaming or its read loop has given up (then a request reconnects).

    Subscribing while the library's read loop is itself reconnecting opens a second connection whose
    answer gets lost, so don't.
    """
    ws_api = client.ws_api
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ws_api._handle_read_loop is None and ws_api.ws is not None and ws_api.ws_state == WSListenerState.STREAMING:
            # The read loop died (e.g. on an unparseable frame) but the socket is still open: every request
            # would be sent and time out forever. Close it so the next request reconnects.
            try:
                await asyncio.wait_for(ws_api.close(), timeout=5)
            except Exception:  # noqa: BLE001 - closing a broken connection may fail; ws is dropped anyway
                ws_api.ws = None
            return
        if ws_api._handle_read_loop is None or ws_api.ws_state == WSListenerState.STREAMING:
            return
        await asyncio.sleep(0.05)


def ws_api_alive(client: AsyncClient) -> bool:
    """The WS-API connection is open, streaming, and its read loop still runs."""
    ws_api = client.ws_api
    return ws_api.ws is not None and ws_api.ws_state == WSListenerState.STREAMING and ws_api._handle_read_loop is not None
