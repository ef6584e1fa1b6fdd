"""What the server keeps per connection: unread reply bytes, and the connections themselves.

``UnreadReplies`` counts the bytes of reply frames that libzmq still holds for a
peer (a client that never reads makes them pile up in its pipe): every data frame
goes out with a MessageTracker, and the frame counts until libzmq has handed it to
the kernel or dropped it with its connection.

``Connections`` sees every TCP or ipc connection of the ROUTER socket through
the socket monitor (accepted, disconnected: each with its file descriptor) and
every request's connection through ZMQ_SRCFD. It closes a connection by shutting
its socket down (libzmq then reads end-of-file and closes it itself), only after
checking on a duplicate of the descriptor that the socket is still the one that
was accepted (its inode), so a descriptor number libzmq reused is never touched.
The duplicate goes onto a descriptor kept open for the purpose (dup2), because
the moment connections must be closed is often the moment no descriptor is free.
"""
from __future__ import annotations

import logging
import os
import resource
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Iterable, Optional

import zmq

log = logging.getLogger("oldphoto.server")

MONITOR_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
FD_RESERVE = 32        # descriptors kept free for the server's own files and sockets
EXCESS_GRACE = 2.0     # seconds a connection over the cap has to hear 'busy' before it is closed
REPLY_GRACE = 0.5      # seconds a 'busy' reply gets to leave before its connection is closed
CLOSING_FORGET = 5.0   # a closed connection whose disconnect event never came is forgotten after this


def mb(n: int) -> str:
    """A byte count for messages: MB, kB or bytes."""
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} kB" if n >= 1000 else f"{n} bytes"


class UnreadReplies:
    """Bytes of reply frames libzmq has not yet sent, per peer routing id."""

    def __init__(self) -> None:
        self._pending: dict[bytes, list[tuple[zmq.MessageTracker, int]]] = {}

    @staticmethod
    def tracked(frames: Iterable) -> list:
        """The data frames as zmq.Frames that report when libzmq is done with them
        (zero-copy: they share the buffers)."""
        return [zmq.Frame(memoryview(f).cast("B") if not isinstance(f, zmq.Frame) else f.buffer,
                          copy=False, track=True) for f in frames]

    def sent(self, identity: bytes, frames: list) -> None:
        """Count ``frames`` (from ``tracked``, already sent) against ``identity``."""
        if frames:
            self._pending.setdefault(identity, []).extend((f.tracker, len(f)) for f in frames)

    def pending(self, identity: bytes) -> int:
        """Bytes still unsent to ``identity``."""
        items = self._pending.get(identity)
        if not items:
            return 0
        items[:] = [(t, n) for t, n in items if not t.done]
        if not items:
            del self._pending[identity]
        return sum(n for _, n in items)

    def total(self) -> int:
        """Bytes still unsent to all peers."""
        return sum(self.pending(i) for i in list(self._pending))


@dataclass
class Conn:
    """One accepted connection."""

    fd: int
    inode: int
    accepted: float
    last: float                     # last request from it or reply to it
    excess: bool = False            # over the peer cap: told 'busy', then closed
    close_at: Optional[float] = None
    closing: Optional[float] = None  # when its socket was shut down
    identities: set = field(default_factory=set)


def _inode(fd: int) -> Optional[int]:
    try:
        return os.fstat(fd).st_ino
    except OSError:
        return None


def fd_room() -> int:
    """Descriptors this process may still open (open-file limit minus open ones and a reserve)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:         # no /proc (macOS): assume a typical start-up
        used = 64
    return max(0, soft - used - FD_RESERVE)


class Connections:
    """The ROUTER socket's connections: peer cap, idle time-out, 'busy' for the excess."""

    def __init__(self, max_peers: int, idle_timeout: float) -> None:
        room = fd_room()
        # a quarter of the room stays free for connections that are told 'busy'
        self.cap = max(1, min(max_peers, room * 3 // 4))
        self.room = max(self.cap + 1, room)
        if self.cap < max_peers:
            log.warning("serving at most %d connections (not %d): the open-file limit allows no more "
                        "(raise it with `ulimit -n`)", self.cap, max_peers)
        self.idle_timeout = idle_timeout
        self._conns: dict[int, Conn] = {}
        self._fd_of: dict[bytes, int] = {}
        self.refused = 0      # connections closed because of the cap
        self.timed_out = 0    # connections closed for being idle
        # two descriptors of our own: a slot to duplicate a connection into, and
        # /dev/null to release that slot again (see _shutdown)
        self._null = os.open(os.devnull, os.O_RDONLY)
        self._slot = os.dup(self._null)

    def close(self) -> None:
        """Release the descriptors of our own."""
        for fd in (self._slot, self._null):
            try:
                os.close(fd)
            except OSError:
                pass
        self._slot = self._null = -1

    # -- events -----------------------------------------------------------------
    def monitor_event(self, parts: list) -> None:
        """One message of the socket monitor."""
        event, fd = struct.unpack("=hi", parts[0].bytes[:6])
        if event == zmq.EVENT_ACCEPTED:
            self._accepted(fd)
        elif event == zmq.EVENT_DISCONNECTED:
            self._gone(fd)

    def _accepted(self, fd: int) -> None:
        known = self._conns.get(fd)
        if known is not None and known.inode == _inode(fd):
            return          # its first request came before this event and registered it
        self._gone(fd)      # a reused number: the old connection's event may have been lost
        self._register(fd)

    def _register(self, fd: int) -> Optional[Conn]:
        """Start tracking connection ``fd``; over the cap it is marked excess, and
        beyond the descriptors there is room for it is closed at once."""
        inode = _inode(fd)
        if inode is None:
            return None
        now = time.monotonic()
        conn = Conn(fd, inode, now, now)
        self._conns[fd] = conn
        if len(self._conns) > self.room:       # no descriptors to spare even for 'busy'
            self.refused += 1
            self._shutdown(conn, now)
        elif self.peers() > self.cap:
            self.refused += 1
            conn.excess = True
            conn.close_at = now + EXCESS_GRACE
        return conn

    def _gone(self, fd: int) -> None:
        conn = self._conns.pop(fd, None)
        if conn is not None:
            for identity in conn.identities:
                if self._fd_of.get(identity) == fd:
                    del self._fd_of[identity]

    def request(self, identity: bytes, fd: int) -> Optional[str]:
        """A request arrived on connection ``fd``. Returns the 'busy' message when the
        connection is over the cap (it is then closed shortly), else None."""
        conn = self._conns.get(fd)
        if conn is None and fd >= 0:     # its accept event is still on its way
            conn = self._register(fd)
        if conn is None:                 # inproc: no descriptor
            return None
        now = time.monotonic()
        conn.last = now
        if identity not in conn.identities:
            conn.identities.add(identity)
            self._fd_of[identity] = fd
        if not conn.excess:
            return None
        conn.close_at = now + REPLY_GRACE
        return (f"the server is serving as many connections as it may ({self.cap}): "
                "try again in a minute")

    def replied(self, identity: bytes) -> None:
        """A reply went to ``identity``: its connection is not idle."""
        conn = self._conns.get(self._fd_of.get(identity, -1))
        if conn is not None:
            conn.last = time.monotonic()

    def peers(self) -> int:
        """Connections within the cap (served ones)."""
        return sum(not c.excess for c in self._conns.values())

    def count(self) -> int:
        return len(self._conns)

    # -- closing ------------------------------------------------------------------
    def sweep(self, identities_with_jobs: set) -> None:
        """Close connections over the cap whose grace ended and idle ones without jobs."""
        now = time.monotonic()
        for conn in list(self._conns.values()):
            if conn.closing is not None:
                if now - conn.closing > CLOSING_FORGET:
                    self._gone(conn.fd)
            elif conn.excess:
                if conn.close_at is None or now >= conn.close_at:
                    self._shutdown(conn, now)
            elif (self.idle_timeout > 0 and now - conn.last >= self.idle_timeout
                  and not conn.identities & identities_with_jobs):
                self.timed_out += 1
                self._shutdown(conn, now)

    def _shutdown(self, conn: Conn, now: float) -> None:
        """End the connection: shut its socket down through a duplicate of its
        descriptor, if that still holds the socket that was accepted."""
        conn.closing = now
        if self._slot < 0:
            return
        try:
            os.dup2(conn.fd, self._slot)      # atomic, and needs no free descriptor
        except OSError:                       # libzmq closed it already
            self._gone(conn.fd)
            return
        try:
            if _inode(self._slot) != conn.inode:    # the number now belongs to another file
                self._gone(conn.fd)
                return
            s = socket.socket(fileno=self._slot)
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass                          # the peer shut it down already
            finally:
                s.detach()                    # the slot stays ours
        except OSError:
            self._gone(conn.fd)
        finally:
            os.dup2(self._null, self._slot)   # drop our reference to the socket


__all__ = ["Connections", "UnreadReplies", "MONITOR_EVENTS", "fd_room", "mb"]
