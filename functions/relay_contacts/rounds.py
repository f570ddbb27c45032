"""Shared rounds: one Graph read of the directory for every phone of a tenant that full-syncs at the same
time on this instance (docs/architecture.md, "Shared rounds").

Full syncs of one tenant whose settings fingerprint (fields, region, scope) is the same share a **feed**:
one thread reads the directory from Graph round after round, turns each page into NDJSON lines once, and
every phone in the feed (a listener) writes those same bytes to its own stream (compressing them itself
when it asked for gzip). A phone that arrives while a round runs joins at once: it gets the rest of that
round and then the whole next one (or just this one, when its first page is still buffered). Graph
promises no page order and pages shift as users are added, so a phone is complete only through one whole
round; its cursor is the delta link of the earliest round it received pages from (the link covers every
change since that round began, so nothing made while the rounds ran is lost; repeats merge by `id`).

Memory: the feed keeps the pages some listener still needs, at most RELAY_ROUND_BUFFER_PAGES, and fetches
only one page ahead of its fastest listener (while no listener waits, nothing is fetched). A listener that
falls out of the buffer (a slow phone) leaves with `slow-client` and retries; while nobody waits for the
next page, a listener that has not taken a page for RELAY_WRITE_TIMEOUT_SECONDS is dropped (its write is
stuck; the socket's own write timeout, set by the handler, ends that request). A phone that disconnects
leaves at once; a feed with no listener left stops fetching; a Graph failure ends every listener with the
error line a single phone's sync would end with. Nothing of a round is written, cached beyond it or logged:
each round logs one `round streamed` line with counts only.

Admission counts feeds: the phone that starts one takes one of the tenant's leases (admission.py) before
the first page is read, the phones that join take none, and the lease is kept over the feed's consecutive
rounds (renewed once half its time has passed) and released when it stops reading. A phone that would need
a new feed when the tenant has no lease left gets `503 sync-busy` before the first byte, as before.
"""
from __future__ import annotations

import contextvars
import copy
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field

from functions.relay_contacts.admission import SyncAdmission
from functions.relay_contacts.lines import ndjson
from functions.relay_contacts.syncs import Sync, failure_line
from shared import logs
from shared.errors import AppError, ServiceUnavailable
from shared.graph.client import RequestCount, counting_requests
from shared.store.leases import Lease

log = logs.get_logger(__name__)

RESET = ndjson({"op": "reset"}).encode()
SLOW_CLIENT = ndjson({"op": "error", "code": "slow-client", "retryable": True}).encode()
INCOMPLETE = ndjson({"op": "error", "code": "incomplete", "retryable": True}).encode()
# How long a phone waits for the feed it joined to read its first page (admission and Graph's retry deadline
# are inside it); after that it gets what the starting phone got, or a 503.
START_WAIT_SECONDS = 120.0


@dataclass(frozen=True)
class RoundKey:
    tenant_id: str
    fingerprint: str  # settings_fingerprint (fields, region, scope): only phones with the same one share


@dataclass
class RoundPlan:
    """What a feed needs from the relay for its key: a fresh full sync per round (its own mapper and scope
    checks), how the first one begins (Graph errors before the first byte mapped to HTTP errors) and the
    `end` line for a round's delta links."""

    new_sync: Callable[[], Sync]
    begin_first: Callable[[Sync], None]
    end_line: Callable[[str, str | None], str]


@dataclass
class _Piece:
    round: int
    data: bytes  # the page's lines, built once for every listener; b"" for the round's end
    contacts: int = 0
    links: tuple[str | None, str | None] | None = None  # on the round's end: users and groups delta links


@dataclass
class _RoundStats:
    started: float
    requests_before: int = 0  # the feed's Graph requests when the round began
    pages: int = 0
    listeners: int = 0  # listeners that received pieces of it
    graph_requests: int | None = None
    duration: float | None = None
    end: int | None = None  # position of the round's end piece (once read to the end)


class Listener:
    """One phone in a feed. `position` is the next piece it needs; it is complete after the end of
    `complete_round`, with the cursor of `first_round`."""

    def __init__(self, position: int, complete_round: int, now: float):
        self.position = position
        self.complete_round = complete_round
        self.first_round: int | None = None
        self.last_round = 0
        self.pulled = now
        self.kicked: bytes | None = None


@dataclass
class _Start:
    done: threading.Event = field(default_factory=threading.Event)
    error: AppError | None = None


class Feed:
    """The consecutive rounds of one key on this instance, their buffer and their listeners."""

    def __init__(self, rounds: Rounds, key: RoundKey):
        self._rounds = rounds
        self.key = key
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # listeners wait here for the next piece
        self._demand = threading.Condition(self._lock)  # the reader waits here for a listener to need one
        self._pieces: deque[_Piece] = deque()
        self._base = 0  # position of _pieces[0]
        self._head = 0  # position of the next piece to be read from Graph
        self._at: dict[int, set[Listener]] = {}  # position -> listeners that need that piece next
        self._listeners: set[Listener] = set()
        self._round = 1
        self._round_start = 0
        self._between = False  # the last piece ended a round and the next one has not begun
        self._stats: dict[int, _RoundStats] = {1: _RoundStats(rounds.clock())}
        self.closed = False  # no phone joins any more (it starts a feed of its own)
        self._reader_gone = False
        self._failure: bytes | None = None
        self._lease: Lease | None = None
        self._lease_taken = 0.0
        self._count = RequestCount()
        self.start = _Start()

    # ---- listeners (request threads) ----------------------------------------------------------------
    def add(self) -> Listener | None:
        """A new listener placed where it can start, or None when this feed takes nobody any more."""
        with self._lock:
            if self.closed:
                return None
            now = self._rounds.clock()
            if self._head == 0 or self._round_start >= self._base:
                # Nothing read yet, or every piece of the current round is still here: the whole round.
                listener = Listener(self._round_start, self._round, now)
            elif self._between:
                listener = Listener(self._head, self._round + 1, now)
            else:  # mid-round: from the newest piece still here (or the next one), then the whole next round
                listener = Listener(max(self._head - 1, self._base), self._round + 1, now)
            self._listeners.add(listener)
            self._at.setdefault(listener.position, set()).add(listener)
            if listener.position == self._head:
                self._demand.notify()
            return listener

    def take(self, listener: Listener) -> _Piece | bytes:
        """The listener's next piece (waiting for it), or the line that ends its stream."""
        with self._lock:
            while True:
                if listener.kicked is not None:
                    return listener.kicked
                if listener.position < self._head:
                    piece = self._pieces[listener.position - self._base]
                    self._move(listener, listener.position + 1)
                    listener.pulled = self._rounds.clock()
                    if listener.first_round is None:
                        listener.first_round = piece.round
                    if listener.last_round != piece.round:
                        listener.last_round = piece.round
                        stats = self._stats.get(piece.round)
                        if stats is not None:
                            stats.listeners += 1
                    self._drop_unneeded()
                    if listener.position == self._head:
                        self._demand.notify()
                    return piece
                if self._failure is not None:
                    return self._failure
                if self.closed and self._reader_gone:
                    return INCOMPLETE  # cannot happen: a feed reads on while a listener needs pieces
                self._arrived.wait()

    def leave(self, listener: Listener) -> None:
        """The listener is done, failed, was dropped or went away: it holds no piece any more."""
        with self._lock:
            if listener in self._listeners:
                self._forget(listener)
                self._drop_unneeded()
                self._demand.notify()
            if not self._listeners and self._reader_gone:
                self._log_rounds(every=True)

    # ---- the reader (one thread per feed) -------------------------------------------------------------
    def begin(self, plan: RoundPlan, admission: SyncAdmission | None) -> None:
        """In the first phone's request thread: the lease and the first page, errors as HTTP errors; then
        the reader thread takes over."""
        try:
            self._lease = admission.admit(self.key.tenant_id) if admission is not None else None
            self._lease_taken = self._rounds.clock()
            sync = plan.new_sync()
            try:
                with counting_requests(self._count):
                    plan.begin_first(sync)
            except BaseException:
                sync.close()
                raise
        except AppError as error:
            self._start_failed(error)
            raise
        except Exception:
            log.exception("round could not start", tenantId=self.key.tenant_id)
            unavailable = ServiceUnavailable("the sync could not start; try again", retry_after=5)
            self._start_failed(unavailable)
            raise unavailable from None
        thread = threading.Thread(target=contextvars.Context().run, args=(self._read, plan, sync),
                                  name="relay-round", daemon=True)
        thread.start()
        self.start.done.set()

    def _start_failed(self, error: AppError) -> None:
        self.start.error = error
        with self._lock:
            self.closed = True
            self._reader_gone = True
            self._failure = INCOMPLETE
            self._listeners.clear()
            self._at.clear()
            self._arrived.notify_all()
        self._release()
        self._rounds.forget(self)
        self.start.done.set()

    def _read(self, plan: RoundPlan, first: Sync) -> None:
        sync: Sync | None = first
        with counting_requests(self._count):
            try:
                while sync is not None:
                    if not self._read_round(sync):
                        return
                    sync.close()
                    sync = None
                    sync = self._next_round(plan)
            except BaseException as error:  # noqa: BLE001 - every listener ends with the single-phone error line
                self._fail(failure_line(error, self.key.tenant_id, self._current_pages()).encode())
            finally:
                if sync is not None:
                    sync.close()
                with self._lock:
                    self.closed = True
                    self._reader_gone = True
                    self._arrived.notify_all()
                    if not self._listeners:
                        self._log_rounds(every=True)
                self._release()
                self._rounds.forget(self)

    def _read_round(self, sync: Sync) -> bool:
        """Pages of one round into the buffer while a listener needs them; False when none is left."""
        chunks = iter(sync.chunks())
        while True:
            if not self._await_demand():
                return False
            self._renew()
            before = sync.contacts
            chunk = next(chunks, None)
            if chunk is None:
                break
            self._append(_Piece(self._round, chunk.encode(), sync.contacts - before))
        users_link, groups_link = sync.links()
        self._append(_Piece(self._round, b"", links=(users_link, groups_link)))
        return True

    def _next_round(self, plan: RoundPlan) -> Sync | None:
        """The next round's sync, begun, when a listener still needs it; None (and no more joins) otherwise."""
        with self._lock:
            if not any(listener.complete_round > self._round for listener in self._listeners):
                self.closed = True
                return None
            self._round += 1
            self._round_start = self._head
            self._between = False
            self._stats[self._round] = _RoundStats(self._rounds.clock(), requests_before=self._count.value)
        sync = plan.new_sync()
        try:
            sync.begin()
        except BaseException:
            sync.close()
            raise
        return sync

    def _await_demand(self) -> bool:
        """Waits until a listener needs the next piece; drops listeners whose writes are stuck; False (and no
        more joins) when no listener is left."""
        timeout = self._rounds.write_timeout
        with self._lock:
            while True:
                if not self._listeners:
                    self.closed = True
                    return False
                if self._at.get(self._head):
                    return True
                now = self._rounds.clock()
                stalled = [listener for listener in self._listeners if now - listener.pulled >= timeout]
                for listener in stalled:
                    self._kick(listener, SLOW_CLIENT, "stalled")
                if stalled:
                    continue
                oldest = min(listener.pulled for listener in self._listeners)
                self._demand.wait(timeout=max(0.05, timeout - (now - oldest)))

    def _append(self, piece: _Piece) -> None:
        with self._lock:
            self._pieces.append(piece)
            self._head += 1
            stats = self._stats[piece.round]
            if piece.links is None:
                stats.pages += 1
            else:
                stats.end = self._head - 1
                stats.graph_requests = self._count.value - stats.requests_before
                stats.duration = self._rounds.clock() - stats.started
                self._between = True
            while self._head - self._base > self._rounds.buffer_pages:
                for listener in list(self._at.get(self._base, ())):  # fell out of the buffer: too slow
                    self._kick(listener, SLOW_CLIENT, "slow")
                self._pieces.popleft()
                self._base += 1
            self._log_rounds()
            self._arrived.notify_all()

    def _fail(self, line: bytes) -> None:
        with self._lock:
            self._failure = line
            self.closed = True
            self._arrived.notify_all()

    def _current_pages(self) -> int:
        with self._lock:
            return self._stats[self._round].pages if self._round in self._stats else 0

    def _renew(self) -> None:
        admission, lease = self._rounds.admission, self._lease
        if admission is None or lease is None:
            return
        if self._rounds.clock() - self._lease_taken < admission.lease_seconds / 2:
            return
        self._lease = admission.renew(lease)
        self._lease_taken = self._rounds.clock()

    def _release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None and self._rounds.admission is not None:
            self._rounds.admission.release(lease)

    # ---- bookkeeping (under the lock) -----------------------------------------------------------------
    def _move(self, listener: Listener, position: int) -> None:
        waiting = self._at[listener.position]
        waiting.discard(listener)
        if not waiting:
            del self._at[listener.position]
        listener.position = position
        self._at.setdefault(position, set()).add(listener)

    def _forget(self, listener: Listener) -> None:
        self._listeners.discard(listener)
        waiting = self._at.get(listener.position)
        if waiting is not None:
            waiting.discard(listener)
            if not waiting:
                del self._at[listener.position]

    def _kick(self, listener: Listener, line: bytes, reason: str) -> None:
        log.info("listener left the round", tenantId=self.key.tenant_id, reason=reason,
                 behind=self._head - listener.position)
        listener.kicked = line
        self._forget(listener)
        self._arrived.notify_all()

    def _drop_unneeded(self) -> None:
        """Pieces no listener needs any more are gone at once (contact data only while it is needed)."""
        while self._base < self._head and not self._at.get(self._base):
            self._pieces.popleft()
            self._base += 1
        self._log_rounds()

    def _log_rounds(self, every: bool = False) -> None:
        """One line per round once none of its pieces is left (or the feed is over): counts only."""
        for number in sorted(self._stats):
            stats = self._stats[number]
            over = stats.end is not None and stats.end < self._base
            if not (over or every):
                break
            del self._stats[number]
            completed = stats.end is not None
            duration = stats.duration if stats.duration is not None else self._rounds.clock() - stats.started
            requests = stats.graph_requests if stats.graph_requests is not None \
                else self._count.value - stats.requests_before
            log.info("round streamed", tenantId=self.key.tenant_id, round=number, pages=stats.pages,
                     listeners=stats.listeners, graphRequests=requests, completed=completed,
                     durationMs=round(duration * 1000, 1))


class Rounds:
    """The feeds of this process, by tenant and settings fingerprint."""

    def __init__(self, admission: SyncAdmission | None, buffer_pages: int, write_timeout: float,
                 clock: Callable[[], float] = time.monotonic):
        self.admission = admission
        self.buffer_pages = buffer_pages
        self.write_timeout = write_timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._feeds: dict[RoundKey, Feed] = {}

    def join(self, key: RoundKey, plan: RoundPlan) -> Iterator[bytes]:
        """A phone's full sync through the key's feed (started by this phone when there is none): errors
        before the first byte are raised here (`503 sync-busy`, Graph's 503/502)."""
        while True:
            with self._lock:
                feed = self._feeds.get(key)
                starting = feed is None
                if feed is None:
                    feed = self._feeds[key] = Feed(self, key)
                listener = feed.add()
            if listener is not None:
                break
            self.forget(feed)  # it stopped between our look-up and our joining: start or join a newer one
        if starting:
            feed.begin(plan, self.admission)
        elif not feed.start.done.wait(START_WAIT_SECONDS):
            feed.leave(listener)
            raise ServiceUnavailable("the directory is temporarily unavailable", retry_after=5,
                                     slug="graph-unavailable")
        if feed.start.error is not None:
            raise copy.copy(feed.start.error)
        return _Stream(self._lines(feed, listener, plan), lambda: feed.leave(listener))

    def forget(self, feed: Feed) -> None:
        with self._lock:
            if self._feeds.get(feed.key) is feed:
                del self._feeds[feed.key]

    def _lines(self, feed: Feed, listener: Listener, plan: RoundPlan) -> Generator[bytes, None, None]:
        pages = contacts = 0
        links: tuple[str | None, str | None] | None = None
        completed = False
        try:
            yield RESET
            while True:
                piece = feed.take(listener)
                if isinstance(piece, bytes):
                    yield piece
                    return
                if piece.links is None:
                    pages += 1
                    contacts += piece.contacts
                    yield piece.data
                    continue
                if piece.round == listener.first_round:
                    links = piece.links
                if piece.round < listener.complete_round:
                    continue
                if links is None or links[0] is None:
                    yield INCOMPLETE
                    return
                completed = True
                yield plan.end_line(links[0], links[1]).encode()
                return
        except GeneratorExit:
            log.info("client went away; left the round", tenantId=feed.key.tenant_id, pages=pages)
            raise
        finally:
            feed.leave(listener)
            if completed:
                log.info("sync streamed", tenantId=feed.key.tenant_id, full=True, pages=pages, contacts=contacts)


class _Stream:
    """A listener's lines; closing it leaves the feed even when nobody ever started reading them."""

    def __init__(self, lines: Generator[bytes, None, None], leave: Callable[[], None]):
        self._lines = lines
        self._leave = leave

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._lines)

    def close(self) -> None:
        self._lines.close()
        self._leave()


__all__ = ["Feed", "Listener", "RoundKey", "RoundPlan", "Rounds"]
