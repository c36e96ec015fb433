"""websock.options.Options: defaults defined once, validated at construction, and what
serve()/connect() do with it."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from typing import Any

import pytest

import websock
import websock.asyncio.connection as asyncio_connection
import websock.asyncio.server as asyncio_server
from websock import options as options_module
from websock.options import (
    CLOSE_GRACE,
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_WRITE_LIMIT,
    Options,
)
from websock.protocol.connection import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE
from websock.protocol.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websock.protocol.handshake import USER_AGENT
from websock.protocol.http import MAX_HEAD_SIZE, MAX_HEADERS

# ---------------------------------------------------------------------- defaults


def test_defaults() -> None:
    options = Options()
    assert options.max_message_size == DEFAULT_MAX_MESSAGE_SIZE == 1 << 20
    assert options.max_frame_size is None
    assert options.max_fragments == DEFAULT_MAX_FRAGMENTS
    assert options.max_queue == DEFAULT_MAX_QUEUE == (16, 1 << 20)
    assert options.write_limit == DEFAULT_WRITE_LIMIT == 65536
    assert options.max_handshake_size == MAX_HEAD_SIZE
    assert options.max_headers == MAX_HEADERS
    assert options.open_timeout == DEFAULT_OPEN_TIMEOUT == 10.0
    assert options.close_timeout == DEFAULT_CLOSE_TIMEOUT == 10.0
    assert options.ping_interval == DEFAULT_PING_INTERVAL == 20.0
    assert options.ping_timeout == DEFAULT_PING_TIMEOUT == 20.0
    assert options.compression == "deflate"
    assert options.subprotocols is None and options.origins is None
    assert options.process_request is None and options.max_connections is None
    assert options.server_header == options.user_agent == USER_AGENT
    assert options.origin is None and options.additional_headers is None
    assert CLOSE_GRACE == 1.0


@pytest.mark.parametrize("function", [websock.serve, websock.connect], ids=["serve", "connect"])
def test_call_defaults_are_the_options_defaults(function: Any) -> None:
    """serve() and connect() spell their defaults through the constants of websock.options."""
    fields = {f.name: f.default for f in dataclasses.fields(Options)}
    checked = 0
    for name, parameter in inspect.signature(function).parameters.items():
        if name in fields and name != "max_connections":  # serve(): "auto", resolved first
            assert parameter.default == fields[name], name
            checked += 1
    assert checked >= 15


def test_defaults_are_defined_once() -> None:
    # Re-exported, not redefined, by the modules that used to define them.
    for name in (
        "DEFAULT_CLOSE_TIMEOUT",
        "DEFAULT_MAX_QUEUE",
        "DEFAULT_OPEN_TIMEOUT",
        "DEFAULT_PING_INTERVAL",
        "DEFAULT_PING_TIMEOUT",
        "DEFAULT_WRITE_LIMIT",
    ):
        assert getattr(asyncio_server, name) is getattr(options_module, name), name
    assert asyncio_connection.DEFAULT_MAX_QUEUE_BYTES is DEFAULT_MAX_QUEUE_BYTES
    assert asyncio_connection.CLOSE_GRACE is CLOSE_GRACE
    assert websock.Options is Options


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"max_message_size": -1}, "max_message_size"),
        ({"max_message_size": 1.5}, "max_message_size"),
        ({"max_message_size": True}, "max_message_size"),
        ({"max_frame_size": -1}, "max_frame_size"),
        ({"max_fragments": 0}, "max_fragments"),
        ({"max_handshake_size": 0}, "max_handshake_size"),
        ({"max_headers": 0}, "max_headers"),
        ({"max_connections": 0}, "max_connections"),
        ({"max_connections": True}, "max_connections"),
        ({"max_connections": "auto"}, "max_connections"),  # serve() resolves it first
        ({"open_timeout": -1}, "open_timeout"),
        ({"close_timeout": "10"}, "close_timeout"),
        ({"ping_interval": -0.5}, "ping_interval"),
        ({"ping_timeout": False}, "ping_timeout"),
        ({"max_queue": 0}, r"max_queue \(messages\)"),
        ({"max_queue": (0, None)}, r"max_queue \(messages\)"),
        ({"max_queue": (16, 0)}, r"max_queue \(bytes\)"),
        ({"max_queue": (16, 1.5)}, r"max_queue \(bytes\)"),
        ({"max_queue": (16,)}, "max_queue must be an int or a pair"),
        ({"max_queue": "16"}, "max_queue must be an int or a pair"),
        ({"write_limit": -1}, "write_limit must be high >= low"),
        ({"write_limit": (100, 200)}, "write_limit must be high >= low"),
        ({"write_limit": (100, -1)}, r"write_limit \(low-water mark\)"),
        ({"write_limit": (None, 10)}, r"write_limit \(high-water mark\)"),
        ({"write_limit": None}, "write_limit must be an int or a pair"),
        ({"write_limit": (1, 2, 3)}, "write_limit must be an int or a pair"),
        ({"compression": "gzip"}, "unsupported compression"),
        ({"server_header": "x\r\nSet-Cookie: a=b"}, "server_header"),
        ({"server_header": 42}, "server_header"),
        ({"user_agent": "x\nInjected: 1"}, "user_agent"),
    ],
)
def test_validation(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Options(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"max_message_size": None, "max_frame_size": 0, "max_fragments": None},
        {"max_queue": None},
        {"max_queue": (None, None)},
        {"max_queue": [4, 4096]},
        {"write_limit": 0},
        {"write_limit": (1000, None)},
        {"open_timeout": None, "close_timeout": 0, "ping_interval": 0.5, "ping_timeout": None},
        {"compression": None},
        {"server_header": None, "user_agent": None},
        {"max_connections": 1},
    ],
)
def test_valid_values(changes: dict[str, Any]) -> None:
    Options(**changes)


def test_positional_arguments_are_refused() -> None:
    with pytest.raises(TypeError):
        Options(1 << 20)  # type: ignore[call-arg]


# ---------------------------------------------------------------------- derived values


@pytest.mark.parametrize(
    ("max_queue", "bounds"),
    [
        (16, (16, DEFAULT_MAX_QUEUE_BYTES)),
        (1000, (1000, 1 << 20)),
        (None, (None, None)),
        ((4, None), (4, None)),
        ((None, 4096), (None, 4096)),
        ([2, 100], (2, 100)),
    ],
)
def test_queue_bounds(max_queue: Any, bounds: tuple[int | None, int | None]) -> None:
    assert Options(max_queue=max_queue).queue_bounds == bounds


@pytest.mark.parametrize(
    ("write_limit", "marks"),
    [
        (65536, (65536, 16384)),
        (0, (0, 0)),
        ((1000, None), (1000, 250)),
        ((1000, 10), (1000, 10)),
        ((1000, 1000), (1000, 1000)),
    ],
)
def test_write_marks(write_limit: Any, marks: tuple[int, int]) -> None:
    assert Options(write_limit=write_limit).write_marks == marks


def test_extensions() -> None:
    default = Options()
    server, client = default.server_extensions(), default.client_extensions()
    assert [type(f) for f in server] == [ServerPerMessageDeflateFactory]
    assert [type(f) for f in client] == [ClientPerMessageDeflateFactory]
    # A fresh factory per call: nothing shared between servers built from one Options.
    assert default.server_extensions()[0] is not server[0]
    off = Options(compression=None)
    assert off.server_extensions() == [] and off.client_extensions() == []
    factory = ServerPerMessageDeflateFactory(compression_level=1)
    custom = Options(compression=(factory,))
    extensions = custom.server_extensions()
    assert extensions == [factory] and isinstance(extensions, list)
    extensions.clear()  # a copy: the Options is unchanged
    assert custom.server_extensions() == [factory]


def test_replace() -> None:
    options = Options(max_queue=4)
    changed = options.replace(close_timeout=1.0, max_queue=None)
    assert changed.close_timeout == 1.0 and changed.queue_bounds == (None, None)
    assert options.close_timeout == DEFAULT_CLOSE_TIMEOUT and options.max_queue == 4
    assert options.replace() == options and options.replace() is not options
    with pytest.raises(ValueError, match="close_timeout"):
        options.replace(close_timeout=-1)
    with pytest.raises(TypeError):
        options.replace(no_such_option=1)


def test_frozen() -> None:
    options = Options()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.close_timeout = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------------- serve() and connect()


async def echo(ws: websock.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


@pytest.mark.parametrize(
    "changes",
    [
        {"max_message_size": -1},
        {"max_fragments": 0},
        {"max_queue": (16, 0)},
        {"write_limit": (10, 20)},
        {"close_timeout": -1},
        {"ping_interval": "often"},
        {"compression": "brotli"},
        {"max_handshake_size": 0},
    ],
)
def test_serve_and_connect_validate_at_call_time(changes: dict[str, Any]) -> None:
    # No event loop and no socket: the error comes from the call itself.
    with pytest.raises(ValueError):
        websock.serve(echo, "127.0.0.1", 0, **changes)
    with pytest.raises(ValueError):
        websock.connect("ws://127.0.0.1:1/", **changes)


def test_role_specific_values_are_validated_at_call_time() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        websock.serve(echo, "127.0.0.1", 0, max_connections=0)
    with pytest.raises(ValueError, match="'auto'"):
        websock.serve(echo, "127.0.0.1", 0, max_connections="many")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="server_header"):
        websock.serve(echo, "127.0.0.1", 0, server_header="a\r\nb")
    with pytest.raises(ValueError, match="user_agent"):
        websock.connect("ws://127.0.0.1:1/", user_agent="a\r\nb")


async def test_server_and_connections_expose_their_options() -> None:
    async with websock.serve(
        echo, "127.0.0.1", 0, max_queue=4, close_timeout=2.5, max_connections=7
    ) as server:
        assert isinstance(server.options, Options)
        assert server.options.max_queue == 4 and server.options.close_timeout == 2.5
        assert server.max_connections == server.options.max_connections == 7
        async with websock.connect(
            f"ws://127.0.0.1:{server.port}/", ping_interval=None, write_limit=(1000, 10)
        ) as ws:
            assert ws.options.ping_interval is None and ws.options.write_marks == (1000, 10)
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 5) == "hi"
            (accepted,) = server.connections
            assert accepted.options is server.options


async def test_max_connections_auto_is_resolved_by_serve() -> None:
    async with websock.serve(echo, "127.0.0.1", 0) as server:
        assert server.options.max_connections == asyncio_server.default_max_connections()
    async with websock.serve(echo, "127.0.0.1", 0, max_connections=None) as server:
        assert server.max_connections is None


# A value different from the default for each field, valid in every role.
_NON_DEFAULTS: dict[str, Any] = {
    "compression": None,
    "max_message_size": 12345,
    "max_frame_size": 2345,
    "max_fragments": 77,
    "max_streaming_size": 98765,
    "streaming": True,
    "max_queue": 5,
    "write_limit": 4321,
    "max_handshake_size": 7777,
    "max_headers": 33,
    "open_timeout": 1.5,
    "close_timeout": 2.5,
    "ping_interval": 3.5,
    "ping_timeout": 4.5,
    "subprotocols": ["chat"],
    "origins": ["https://example.org"],
    "process_request": print,
    "select_subprotocol": max,
    "process_response": min,
    "max_connections": 9,
    "broadcast_limit": 4096,
    "trusted_proxies": ["10.0.0.0/8"],
    "slow_consumer": "close",
    "server_header": "test-server",
    "origin": "https://example.org",
    "additional_headers": {"X-Test": "1"},
    "user_agent": "test-agent",
    "max_redirects": 3,
    "logger": "test.logger",
    "backoff": websock.Backoff(initial=0.5, maximum=9.0),
    "process_exception": repr,
}


def test_from_arguments_takes_every_field_by_name() -> None:
    assert set(_NON_DEFAULTS) == {f.name for f in dataclasses.fields(Options)}
    options = Options.from_arguments({**_NON_DEFAULTS, "handler": print, "ssl": object()})
    for name, value in _NON_DEFAULTS.items():
        assert getattr(options, name) == value, name
    auto = Options.from_arguments({"max_connections": "auto"})
    assert auto.max_connections == options_module.default_max_connections()


def _entry_points() -> list[Any]:
    import websock.sync

    return [websock.serve, websock.connect, websock.sync.serve, websock.sync.connect]


@pytest.mark.parametrize(
    "function", _entry_points(), ids=["serve", "connect", "sync.serve", "sync.connect"]
)
def test_every_options_keyword_reaches_options(
    function: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each keyword of serve()/connect() named like an Options field ends up in Options."""
    built: list[Options] = []
    original = Options.from_arguments.__func__  # type: ignore[attr-defined]

    def spy(cls: type[Options], arguments: Any, **kwargs: Any) -> Options:
        built.append(original(cls, arguments, **kwargs))
        raise _Stop

    monkeypatch.setattr(Options, "from_arguments", classmethod(spy))
    parameters = inspect.signature(function).parameters
    given = {name: value for name, value in _NON_DEFAULTS.items() if name in parameters}
    assert len(given) >= 15
    target = ("127.0.0.1", 0) if "handler" in parameters else ()
    first = echo if "handler" in parameters else "ws://127.0.0.1:1/"
    with pytest.raises(_Stop):
        function(first, *target, **given)
    (options,) = built
    for name, value in given.items():
        assert getattr(options, name) == value, name


class _Stop(Exception):
    """Raised by the spy: the call is checked once its Options are built."""


def test_thread_limit_is_the_least_of_the_kernel_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    values = {
        "/proc/sys/kernel/pid_max": 32768,
        "/proc/sys/kernel/threads-max": 20000,
        "/sys/fs/cgroup/pids.max": None,  # "max": no limit
        "/proc/sys/vm/max_map_count": 65530,  # a sixth: 10921
    }
    monkeypatch.setattr(options_module, "_read_int", values.get)
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    expected = 10921 if soft == resource.RLIM_INFINITY else min(10921, soft)
    assert options_module.thread_limit() == expected
    values["/sys/fs/cgroup/pids.max"] = 500
    assert options_module.thread_limit() == min(500, expected)


def test_auto_max_connections_of_the_threading_server_counts_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import websock.sync

    monkeypatch.setattr(options_module, "thread_limit", lambda: 1000)
    by_files = options_module.default_max_connections()
    expected = 450 if by_files is None else min(by_files, 450)  # 90% of 1000, 2 per connection
    assert options_module.default_max_connections(2) == expected
    with websock.sync.serve(print, "127.0.0.1", 0) as server:
        assert server.max_connections == expected
    # The asyncio server runs no thread per connection: descriptors alone bound it.
    assert Options.from_arguments({"max_connections": "auto"}).max_connections == by_files


def test_user_agent_header_is_an_alias_of_user_agent() -> None:
    import websock.sync
    from websock.options import ABSENT, user_agent_alias

    assert user_agent_alias(USER_AGENT, ABSENT) == USER_AGENT
    assert user_agent_alias("mine/1", ABSENT) == "mine/1"
    assert user_agent_alias(USER_AGENT, "theirs/2") == "theirs/2"
    assert user_agent_alias(USER_AGENT, None) is None
    with pytest.raises(TypeError, match="not both"):
        user_agent_alias("mine/1", "theirs/2")
    client = websock.connect("ws://127.0.0.1:1/", user_agent_header="alias/3")
    assert client._options.user_agent == "alias/3"
    with pytest.raises(TypeError, match="not both"):
        websock.sync.connect("ws://127.0.0.1:1/", user_agent="a", user_agent_header="b")
