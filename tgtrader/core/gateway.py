"""The order gateway: the only code that sends orders, cancels and replaces to the exchange.

Every answer goes back to the kernel's queue as an OrderUpdate, so machines learn of it in event order.
The gateway owns the sending policy: one short retry after a brief rate limit, nothing sent during an IP
ban (a stop's exit waits with its client order id and leaves when the ban ends), lookups by client order
id when an answer was lost (never a blind resend), and refusals turned into typed REJECTED updates.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from loguru import logger

from tgtrader.core.events import CoreEvent, ErrorEvent, OrderRejected
from tgtrader.core.orders import OrderTracker
from tgtrader.core.ports import Exchange
from tgtrader.errors import ExchangeError, IpBanned, OrderStatusUnknown, RateLimited, UnknownOrder
from tgtrader.types import CancelOrder, Intent, OrderStatus, OrderUpdate, PlaceOrder, ReplaceOrder

ZERO = Decimal(0)
BRIEF_RATE_LIMIT_S = 5.0  # a 429 asking to wait at most this long is waited out once before refusing
LOOKUP_EVERY_S = 1.0  # while an order's fate is unknown, look it up this often (growing to LOOKUP_CAP_S)
LOOKUP_CAP_S = 30.0


@dataclass(frozen=True, slots=True)
class BanOver:
    """Queued when an IP ban (418) should be over: reconcile, then send what was refused meanwhile."""


class OrderGateway:
    def __init__(
        self,
        exchange: Exchange,
        tracker: OrderTracker,
        post: Callable[[object], None],
        publish: Callable[[CoreEvent], None],
        clock_ms: Callable[[], int],
        on_refused: Callable[[PlaceOrder, ExchangeError], None],
        holds_during_ban: Callable[[str], bool],
        urgent: Callable[[str], bool] = lambda cid: False,
    ) -> None:
        """`post` queues news for the kernel; `on_refused` lets it react to a refusal (e.g. pause a grid);
        `holds_during_ban(cid)` says whether an order must still go out once a ban ends (a stop's exit)."""
        self.exchange = exchange
        self.tracker = tracker
        self.post = post
        self.publish = publish
        self.clock_ms = clock_ms
        self.on_refused = on_refused
        self.holds_during_ban = holds_during_ban
        self.banned_until = 0
        self.deferred: list[PlaceOrder] = []  # held back by an IP ban, sent when it ends
        self.unsettled: dict[str, asyncio.Task[None]] = {}  # client order id -> lookups until its fate is known
        self.no_resend: set[str] = set()  # lost answers that are not sent again even once proven absent (panic)
        # Set while recovery replays what was missed: the store may have lost its last reactions (power loss,
        # a restored backup) while the exchange kept their orders, and the replay emits the same intents with
        # the same client order ids. Each is looked up first and adopted if the exchange has it (issue 19).
        self.adopt_first = False
        # Sending happens off the kernel's event loop: a paced grid start (Binance's ORDERS limits) must not hold
        # back the events behind it, a stop trigger included. Ordinary intents go out in order through one FIFO
        # sender (a cancel never overtakes the place of the same order); urgent places (stop, exit and panic
        # sells: `urgent(cid)`) go out at once in their own task. Each queued place keeps the adopt-first flag
        # of the moment it was queued (recovery's replay sets it only while it runs).
        self.urgent = urgent
        self._fifo: deque[tuple[Intent, bool]] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._urgent_tasks: set[asyncio.Task[None]] = set()
        self._urgent_by_cid: dict[str, asyncio.Task[None]] = {}  # a cancel of one waits for its place to finish

    @property
    def sending(self) -> list[asyncio.Task[None]]:
        """Sends in flight (the kernel's idle() waits for them)."""
        out = [t for t in self._urgent_tasks if not t.done()]
        if self._sender is not None and not self._sender.done():
            out.append(self._sender)
        return out

    async def close(self) -> None:
        """Stop sending and the lookups (a restart resumes them: unsent orders are still PENDING_NEW in the store)."""
        self._fifo.clear()
        tasks = [*self.sending, *self.unsettled.values()]
        self.unsettled = {}
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    @property
    def banned(self) -> bool:
        return self.banned_until > self.clock_ms()

    async def execute(self, intents: list[Intent]) -> None:
        """Hand a saved reaction's intents to the senders and return (see __init__)."""
        loop = asyncio.get_running_loop()
        for it in intents:
            if isinstance(it, PlaceOrder) and self.urgent(it.client_order_id):
                cid = it.client_order_id
                task = loop.create_task(self._send(it, self.adopt_first), name=f"send-{cid}")
                self._urgent_tasks.add(task)
                self._urgent_by_cid[cid] = task
                task.add_done_callback(self._urgent_done)
            elif isinstance(it, (PlaceOrder, ReplaceOrder, CancelOrder)):
                self._fifo.append((it, self.adopt_first))
        if self._fifo and (self._sender is None or self._sender.done()):
            self._sender = loop.create_task(self._drain(), name="order-sender")

    def _urgent_done(self, task: asyncio.Task[None]) -> None:
        self._urgent_tasks.discard(task)
        for cid, t in list(self._urgent_by_cid.items()):
            if t is task:
                del self._urgent_by_cid[cid]

    async def _drain(self) -> None:
        while self._fifo:
            it, adopt = self._fifo.popleft()
            await self._send(it, adopt)

    async def _send(self, it: Intent, adopt_first: bool) -> None:
        target = it.client_order_id if isinstance(it, CancelOrder) else (
            it.cancel.client_order_id if isinstance(it, ReplaceOrder) else None)
        placing = self._urgent_by_cid.get(target) if target is not None else None
        if placing is not None:  # never cancel an urgent order before its own place went out
            await asyncio.wait({placing})
        try:
            if isinstance(it, PlaceOrder):
                await self.place(it, adopt_first)
            elif isinstance(it, ReplaceOrder):
                await self.replace(it)
            elif isinstance(it, CancelOrder):
                await self.cancel(it)
        except Exception as exc:  # noqa: BLE001 - one failed send must not stop the others
            logger.exception("core: sending {} failed", type(it).__name__)
            self.publish(ErrorEvent("gateway", f"{type(exc).__name__}: {exc}", self.clock_ms()))

    def reject(self, p: PlaceOrder, exc: ExchangeError) -> None:
        """Turn a refusal into a REJECTED update for the owner (queued, processed in order) and events."""
        code = exc.code
        text = f"{code} {exc}" if code is not None else str(exc)
        ts = self.clock_ms()
        self.post(OrderUpdate(p.symbol, p.client_order_id, p.side, p.order_type, OrderStatus.REJECTED,
                              p.price or ZERO, p.qty, ZERO, ts_ms=ts, reject_reason=exc.reason, reject_text=text))
        self.publish(OrderRejected(p.symbol, p.client_order_id, p.owner, str(exc), code, ts))
        self.on_refused(p, exc)

    async def place(self, p: PlaceOrder, adopt_first: bool | None = None) -> None:
        if self.banned:
            self._refuse_while_banned(p)
            return
        if (self.adopt_first if adopt_first is None else adopt_first) and await self._adopted(p):
            return
        for attempt in range(2):
            try:
                self.post(await self.exchange.place_order(p))
                return
            except OrderStatusUnknown as exc:
                self.settle(p, exc.settle_after_s, resend=True)
                return
            except IpBanned as exc:
                self.ban(exc)
                self._refuse_while_banned(p)
                return
            except RateLimited as exc:
                if attempt == 0 and exc.retry_after <= BRIEF_RATE_LIMIT_S:
                    await asyncio.sleep(exc.retry_after)
                    continue
                self.reject(p, exc)
                return
            except ExchangeError as exc:
                self.reject(p, exc)
                return

    async def _adopted(self, p: PlaceOrder) -> bool:
        """The exchange already has an order with this client order id: its state goes to the kernel, nothing
        is sent. A failed lookup proves nothing, so the order waits for the lookups of a lost answer."""
        try:
            found = await self.exchange.get_order(p.symbol, p.client_order_id)
        except ExchangeError as exc:
            logger.warning("core: {} not looked up before sending ({}); settling it first", p.client_order_id, exc)
            self.settle(p, self.exchange.order_settle_s, resend=True)
            return True
        if found is None:
            return False
        logger.info("core: {} already on the exchange ({}); adopted, not sent again", p.client_order_id,
                    found.status.value)
        self.post(found)
        return True

    def drop_resends(self) -> int:
        """/panic: the orders whose answers were lost are still looked up (found ones are reported, so they can
        be cancelled), but none is sent again. Returns how many were pending."""
        self.no_resend.update(self.unsettled)
        return len(self.unsettled)

    def settle(self, p: PlaceOrder, settle_after_s: float, resend: bool) -> None:
        """Look `p` up until its fate is known (see _look_up_until_known); one lookup task per client order id."""
        if p.client_order_id not in self.unsettled:
            task = asyncio.create_task(self._look_up_until_known(p, settle_after_s, resend),
                                       name=f"settle-{p.client_order_id}")
            self.unsettled[p.client_order_id] = task

    async def _look_up_until_known(self, p: PlaceOrder, settle_after_s: float, resend: bool) -> None:
        """An order whose answer was lost: look it up by client order id until its fate is provable.

        Found: its state goes to the kernel. Absent proves nothing while the venue may still execute the
        request (`settle_after_s`, from the adapter) or while lookups fail; absent after that: it never
        existed, so it is sent again with the same client order id (`resend`), or reported as refused (a
        replace's new leg: its owner plans again). The order stays PENDING_NEW meanwhile, so nothing is sized
        or re-sent from a guess, and a restart resumes from the store.
        """
        cid = p.client_order_id
        deadline = time.monotonic() + settle_after_s
        wait = 0.0
        try:
            while True:
                if wait:
                    await asyncio.sleep(wait)
                wait = min(LOOKUP_CAP_S, max(LOOKUP_EVERY_S, wait * 2))
                o = self.tracker.get(cid)
                if o is not None and o.status is not OrderStatus.PENDING_NEW:
                    return  # the stream or a reconciliation told us already
                try:
                    found = await self.exchange.get_order(p.symbol, cid)
                except ExchangeError as exc:
                    logger.warning("core: {} unknown and its lookup failed ({}); trying again", cid, exc)
                    continue
                if found is not None:
                    self.post(found)
                    return
                left = deadline - time.monotonic()
                if left > 0:
                    wait = min(wait, left + 0.05)
                    continue
                break
        finally:
            self.unsettled.pop(cid, None)
        if resend and cid not in self.no_resend:
            logger.warning("core: {} provably never reached the exchange; sending it again (same id)", cid)
            await self.place(p)
        else:
            self.reject(p, ExchangeError("not placed: the request's answer was lost and the order does not exist"))

    def _refuse_while_banned(self, p: PlaceOrder) -> None:
        """A triggered stop must still sell: its order waits (PENDING_NEW, same client order id) and goes out
        when the ban ends. Anything else is rejected now; grids place their refused orders again then."""
        if self.holds_during_ban(p.client_order_id):
            self.deferred.append(p)
            return
        self.reject(p, ExchangeError("trading is suspended: the exchange banned this IP", None))

    async def cancel(self, c: CancelOrder) -> None:
        if self.banned:
            self.tracker.on_cancel_failed(c.client_order_id)  # nothing can be sent while banned
            return
        try:
            self.post(await self.exchange.cancel_order(c.symbol, c.client_order_id))
        except UnknownOrder:
            await self.lookup(c.symbol, c.client_order_id, gone_if_missing=True)
        except IpBanned as exc:
            self.ban(exc)
        except ExchangeError as exc:
            self.tracker.on_cancel_failed(c.client_order_id)
            await self.lookup(c.symbol, c.client_order_id)
            self.publish(ErrorEvent("cancel_order", f"{c.client_order_id}: {exc}", self.clock_ms()))

    async def replace(self, r: ReplaceOrder) -> None:
        try:
            self.post(await self.exchange.replace_order(r))
        except UnknownOrder:
            # the old order is gone (filled or cancelled): the new one was not placed
            await self.lookup(r.cancel.symbol, r.cancel.client_order_id)
            self.reject(r.place, UnknownOrder("replace not done: the order to cancel is gone"))
        except IpBanned as exc:
            self.ban(exc)
            self.reject(r.place, exc)
        except OrderStatusUnknown as exc:  # the new leg may exist: never treat it as refused before we know
            await self.lookup(r.cancel.symbol, r.cancel.client_order_id)
            self.settle(r.place, exc.settle_after_s, resend=False)
        except ExchangeError as exc:
            await self.lookup(r.cancel.symbol, r.cancel.client_order_id)
            self.reject(r.place, exc)

    async def lookup(self, symbol: str, cid: str, gone_if_missing: bool = False) -> None:
        try:
            found = await self.exchange.get_order(symbol, cid)
        except ExchangeError:
            return
        if found is not None:
            self.post(found)
        elif gone_if_missing:
            o = self.tracker.get(cid)
            if o is not None and o.is_open:
                self.post(OrderUpdate(symbol, cid, o.side, o.order_type, OrderStatus.CANCELED,
                                      o.price or ZERO, o.qty, o.executed_qty, ts_ms=self.clock_ms()))

    def ban(self, exc: IpBanned) -> None:
        """Nothing is sent until the ban ends (Binance lengthens bans for clients that keep asking). Grids keep
        their state: their resting orders still work on the exchange, and cancelling is impossible anyway.
        When the ban is over, the kernel reconciles and sends what was refused."""
        ts = self.clock_ms()
        new_ban = self.banned_until <= ts
        self.banned_until = max(self.banned_until, ts + int(exc.retry_after * 1000))
        if new_ban:
            self.publish(ErrorEvent("exchange", str(exc), ts, severity="ban", extra={"retry_after_s": exc.retry_after}))
        delay_s = (self.banned_until - ts) / 1000 + 0.1
        asyncio.get_running_loop().call_later(delay_s, self.post, BanOver())

    def end_ban(self) -> list[PlaceOrder] | None:
        """At a BanOver: None while the ban still runs (or was handled), else the held orders, now released."""
        if self.banned_until == 0 or self.banned:
            return None
        self.banned_until = 0
        held, self.deferred = self.deferred, []
        return held
