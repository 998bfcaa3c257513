"""A forward proxy and a TLS front on 127.0.0.1, written with asyncio streams.

`LoopbackProxy` answers CONNECT by opening a tunnel (then it sees only the
bytes of TLS) and forwards plain absolute-form requests (then it sees
everything). `seen` holds what it could read in the clear: the CONNECT head,
or a whole plain request; `tunnelled` counts the bytes it relayed without
being able to read them. `refuse` makes it answer every CONNECT with that
status instead. `TlsFront` terminates TLS and relays to a plain port (the
sandbox), so that an https base URL reaches the sandbox. Both only ever
connect to 127.0.0.1, and every read is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

READ_SECONDS = 10.0
LOOPBACK = "127.0.0.1"


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    sink: list[bytes] | None,
    counter: list[int] | None = None,
) -> None:
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), READ_SECONDS)
            if not chunk:
                break
            if sink is not None:
                sink.append(chunk)
            if counter is not None:
                counter[0] += len(chunk)
            writer.write(chunk)
            await writer.drain()
    except (OSError, asyncio.TimeoutError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


async def _relay(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    sink: list[bytes] | None,
    counter: list[int] | None = None,
) -> None:
    await asyncio.gather(
        _pipe(client[0], upstream[1], sink, counter),
        _pipe(upstream[0], client[1], None, counter),
    )


class _LoopbackServer:
    """A stream server on 127.0.0.1 that cancels its connections on exit."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.context = context
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def _open(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, LOOPBACK, 0, ssl=self.context
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(OSError):
                writer.close()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        raise NotImplementedError


class LoopbackProxy(_LoopbackServer):
    """A recording HTTP forward proxy on 127.0.0.1 (CONNECT and plain requests)."""

    def __init__(self, *, refuse: int | None = None) -> None:
        super().__init__()
        self.refuse = refuse
        self.seen: list[bytes] = []
        self.connects: list[str] = []
        self.tunnelled = [0]

    @property
    def url(self) -> str:
        """The proxy's URL."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def cleartext(self) -> str:
        """Everything the proxy could read, as text."""
        return b"".join(self.seen).decode("latin-1")

    async def __aenter__(self) -> LoopbackProxy:
        await self._open()
        return self

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_SECONDS)
        self.seen.append(head)
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if method == "CONNECT":
            await self._connect(target, reader, writer)
        else:
            await self._forward(head, target, reader, writer)

    async def _connect(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connects.append(target)
        host, _, port = target.rpartition(":")
        if self.refuse is not None or host != LOOPBACK:
            status = self.refuse or 403
            writer.write(
                f"HTTP/1.1 {status} Refused\r\nContent-Length: 0\r\n\r\n".encode()
            )
            await writer.drain()
            return
        upstream = await asyncio.open_connection(LOOPBACK, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await _relay((reader, writer), upstream, None, self.tunnelled)

    async def _forward(
        self,
        head: bytes,
        target: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        # Absolute form: http://127.0.0.1:port/path. Only loopback is served.
        authority = target.split("://", 1)[1].split("/", 1)[0]
        host, _, port = authority.rpartition(":")
        if host != LOOPBACK:
            writer.write(b"HTTP/1.1 403 Refused\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        upstream = await asyncio.open_connection(LOOPBACK, int(port))
        upstream[1].write(head)
        await _relay((reader, writer), upstream, self.seen)


class TlsFront(_LoopbackServer):
    """TLS on 127.0.0.1 in front of a plain port: https for the sandbox."""

    def __init__(self, context: ssl.SSLContext, port: int) -> None:
        super().__init__(context)
        self.target = port

    async def __aenter__(self) -> TlsFront:
        await self._open()
        return self

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        upstream = await asyncio.open_connection(LOOPBACK, self.target)
        await _relay((reader, writer), upstream, None)
