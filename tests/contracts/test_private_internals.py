"""The private daphne / Twisted / autobahn / Channels internals the stream relies on.

The fan-out writes finished frames straight into daphne's Twisted transport, reads
that transport's buffer to measure a slow client, closes with codes autobahn's public
``sendClose`` refuses, and finds daphne's protocol behind the ASGI ``send`` (see
marketdata/streaming/connection.py, quantsaas/web.py, quantsaas/management/commands/serve.py,
marketdata/streaming/origin.py and consumer.py). None of that is public API, so an
upgrade can break it silently: most of our code falls back to the slow ASGI path
(or reports a backlog of 0) when an attribute is missing, rather than failing.

Each test here checks one reliance against the installed versions, without servers,
and fails naming the library, its version and what to re-check in our code.
docs/operations.md ("Upgrading daphne, Twisted, autobahn or Channels") says when to run it.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import inspect
import socket
import textwrap
from collections import deque
from importlib.metadata import version
from typing import Any

import pytest

# Importing daphne.server installs Twisted's asyncio reactor (the daphne app does it too).
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import OriginValidator, WebsocketDenier
from channels.sessions import InstanceSessionWrapper, SessionMiddlewareStack
from daphne.access import AccessLogGenerator
from daphne.cli import CommandLineInterface
from daphne.endpoints import build_endpoint_description_strings
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from twisted.internet import defer, protocol, tcp
from twisted.internet.testing import StringTransport

from marketdata.streaming import frames
from marketdata.streaming.connection import (
    TransportWriter,
    _daphne_protocol,
    _transport_backlog,
    close_frame_send,
    unwrap_send,
)

CONNECTION = "marketdata/streaming/connection.py"
WEB = "quantsaas/web.py"
SERVE = "quantsaas/management/commands/serve.py"
ORIGIN = "marketdata/streaming/origin.py"
CONSUMER = "marketdata/streaming/consumer.py"


def broken(library: str, what: str, recheck: str) -> str:
    """The failure message: the library and its version, what changed, where we rely on it."""
    return (
        f"{library} {version(library)}: {what}\n"
        f"Re-check {recheck}, then update this contract (docs/operations.md, "
        f'"Upgrading daphne, Twisted, autobahn or Channels").'
    )


def parameters(func: Any) -> set[str]:
    return set(inspect.signature(func).parameters)


def self_attributes_assigned(func: Any) -> set[str]:
    """Names of ``self.<name> = ...`` in a function's source (attributes set outside __init__)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    return {
        target.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
    }


# --- daphne ---------------------------------------------------------------------------


async def test_daphne_sends_through_a_partial_of_handle_reply_bound_to_the_protocol():
    received: list[Any] = []

    async def application(*, scope: dict, receive: Any, send: Any) -> None:
        received.append(send)

    server = Server.__new__(Server)
    server.application = application
    ws_protocol = WebSocketFactory(server).buildProtocol(None)
    ws_protocol.makeConnection(StringTransport())
    server.connections = {ws_protocol: {}}
    server.create_application(ws_protocol, {"type": "websocket"})
    await asyncio.sleep(0)
    server.connections[ws_protocol]["application_instance"].cancel()

    send = received[0] if received else None
    assert isinstance(send, functools.partial) and send.func == server.handle_reply, broken(
        "daphne",
        "Server.create_application no longer passes send=partial(server.handle_reply, protocol).",
        f"{CONNECTION} (_daphne_protocol): without the protocol every client takes the "
        "ASGI path and slow clients are never measured",
    )
    assert _daphne_protocol(send) is ws_protocol, broken(
        "daphne", "the protocol is no longer send.args[0].", f"{CONNECTION} (_daphne_protocol)"
    )
    assert {"protocol", "message"} <= parameters(Server.handle_reply), broken(
        "daphne", "Server.handle_reply(protocol, message) changed.", f"{CONNECTION}"
    )


def test_daphne_websocket_protocol_is_autobahns_with_a_twisted_transport():
    assert issubclass(WebSocketProtocol, WebSocketServerProtocol), broken(
        "daphne",
        "WebSocketProtocol is no longer autobahn's Twisted WebSocketServerProtocol.",
        f"{CONNECTION} (TransportWriter, close_frame_send)",
    )
    assert issubclass(WebSocketFactory, WebSocketServerFactory), broken(
        "daphne",
        "WebSocketFactory is no longer autobahn's WebSocketServerFactory.",
        f"{WEB} (_websocket_options: setProtocolOptions(failByDrop=False))",
    )


def test_daphne_server_run_builds_ws_factory_and_cancels_applications_before_shutdown():
    assigned = self_attributes_assigned(Server.run)
    assert {"ws_factory", "connections"} <= assigned, broken(
        "daphne",
        f"Server.run no longer sets self.ws_factory / self.connections (sets {sorted(assigned)}).",
        f"{WEB} (_websocket_options reads cli.server.ws_factory)",
    )
    source = inspect.getsource(Server.run)
    assert 'addSystemEventTrigger("before", "shutdown", self.kill_all_applications)' in source, (
        broken(
            "daphne",
            "Server.run no longer cancels the applications from a 'before shutdown' trigger.",
            f"{WEB} (streams_drain is registered first so the 1012 close frames go out "
            "while the connections are still held)",
        )
    )


def test_daphne_command_line_keeps_its_server_on_the_instance():
    cli = CommandLineInterface()
    assert hasattr(cli, "server") and "server" in self_attributes_assigned(cli.run), broken(
        "daphne",
        "CommandLineInterface.run no longer keeps the Server as cli.server.",
        f"{WEB} (_websocket_options)",
    )
    assert "args" in parameters(cli.run), broken(
        "daphne", "CommandLineInterface.run(args) changed.", f"{WEB} (main)"
    )


def test_daphne_server_takes_what_embedded_serve_passes():
    expected = {"application", "endpoints", "signal_handlers", "action_logger", "ready_callable"}
    missing = expected - parameters(Server)
    assert not missing, broken(
        "daphne", f"Server() no longer takes {sorted(missing)}.", f"{SERVE} (_serve_embedded)"
    )
    server = Server(application=None, endpoints=["tcp:port=0"])
    assert server.listening_addresses == [], broken(
        "daphne", "Server.listening_addresses is gone.", f"{SERVE} (_serve_embedded)"
    )
    assert {"host", "port"} <= parameters(build_endpoint_description_strings), broken(
        "daphne", "build_endpoint_description_strings(host, port) changed.", SERVE
    )
    assert "stream" in parameters(AccessLogGenerator), broken(
        "daphne", "AccessLogGenerator(stream) changed.", SERVE
    )


# --- autobahn ---------------------------------------------------------------------------


def _open_protocol() -> tuple[WebSocketServerProtocol, StringTransport]:
    """An autobahn server protocol after a real handshake, over an in-memory transport."""
    factory = WebSocketServerFactory()
    factory.protocol = WebSocketServerProtocol
    factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
    ws = factory.buildProtocol(None)
    transport = StringTransport()
    ws.makeConnection(transport)
    ws.dataReceived(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    transport.clear()
    return ws, transport


def test_autobahn_protocol_state_the_transport_writer_reads():
    ws = WebSocketFactory(object).buildProtocol(None)
    ws.makeConnection(StringTransport())
    for name in ("state", "STATE_OPEN", "send_queue", "_perMessageCompress", "transport"):
        assert hasattr(ws, name), broken(
            "autobahn",
            f"WebSocketProtocol.{name} is gone.",
            f"{CONNECTION} (TransportWriter.for_send / ready: it would silently fall back "
            "to the ASGI path)",
        )
    assert isinstance(ws.send_queue, deque) and ws._perMessageCompress is None, broken(
        "autobahn",
        "send_queue is no longer a deque, or _perMessageCompress is not None "
        "without negotiated compression.",
        f"{CONNECTION} (TransportWriter.for_send / ready)",
    )


def test_autobahn_frames_a_text_message_exactly_as_our_shared_wire_frame():
    ws, transport = _open_protocol()
    assert ws.state == ws.STATE_OPEN
    assert TransportWriter.for_send(functools.partial(lambda p, m: None, ws)) is not None, broken(
        "autobahn", "an open protocol no longer qualifies for the direct write.", CONNECTION
    )
    for size in (5, 300, 70_000):  # each of the three length encodings
        payload = b'"' + b"x" * (size - 2) + b'"'
        ws.sendMessage(payload)
        assert transport.value() == frames.wire(payload), broken(
            "autobahn",
            f"an unmasked, uncompressed text message of {size} bytes is framed differently.",
            "marketdata/streaming/frames.py (wire) and TransportWriter: clients would read "
            "different bytes from the direct path than from autobahn",
        )
        transport.clear()


def test_autobahn_send_close_frame_writes_any_close_code():
    assert {"code", "reasonUtf8", "isReply"} <= parameters(
        WebSocketServerProtocol.sendCloseFrame
    ), broken("autobahn", "sendCloseFrame(code, reasonUtf8, isReply) changed.", CONNECTION)
    ws, transport = _open_protocol()
    assert close_frame_send(ws, code=1012, reason="restarting"), broken(
        "autobahn", "sendCloseFrame refused close code 1012.", f"{CONNECTION} (close_frame_send)"
    )
    assert transport.value() == b"\x88\x0c\x03\xf4restarting", broken(
        "autobahn",
        "sendCloseFrame no longer writes the close frame at once.",
        f"{CONNECTION} (close_frame_send; the drain in {WEB})",
    )


def test_autobahn_factory_takes_fail_by_drop():
    factory = WebSocketFactory(object)
    factory.setProtocolOptions(failByDrop=False)
    assert factory.failByDrop is False, broken(
        "autobahn",
        "setProtocolOptions(failByDrop=False) no longer applies.",
        f"{WEB} (_websocket_options: oversized messages must close with 1009)",
    )


# --- Twisted ----------------------------------------------------------------------------


class _QuietReactor:
    """Just enough reactor for a transport that is never run."""

    def addWriter(self, _: object) -> None: ...
    def removeWriter(self, _: object) -> None: ...
    def addReader(self, _: object) -> None: ...
    def removeReader(self, _: object) -> None: ...


def test_twisted_tcp_connection_buffer_is_what_the_backlog_counts():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    try:
        transport = tcp.Connection(ours, protocol.Protocol(), _QuietReactor())
        for name in ("dataBuffer", "offset", "_tempDataLen", "connected", "disconnecting"):
            assert hasattr(transport, name), broken(
                "Twisted",
                f"tcp.Connection.{name} is gone.",
                f"{CONNECTION} (_transport_backlog would report 0: slow clients never lag)",
            )
        assert transport.TLS is False, broken(
            "Twisted", "tcp.Connection.TLS is no longer False on a plain connection.", CONNECTION
        )
        transport.connected = True
        assert transport.writeSomeData(b"abc") == 3 and theirs.recv(3) == b"abc", broken(
            "Twisted",
            "tcp.Connection.writeSomeData no longer returns the bytes sent.",
            f"{CONNECTION} (TransportWriter.write)",
        )
        transport.write(b"x" * 10)
        assert _transport_backlog(transport) == 10, broken(
            "Twisted",
            "write() no longer counts buffered bytes in dataBuffer/offset/_tempDataLen.",
            f"{CONNECTION} (_transport_backlog)",
        )
    finally:
        ours.close()
        theirs.close()


def test_twisted_deferred_wraps_an_asyncio_future():
    assert callable(getattr(defer.Deferred, "fromFuture", None)), broken(
        "Twisted", "Deferred.fromFuture is gone.", f"{WEB} (streams_drain) and {SERVE}"
    )


# --- Channels ---------------------------------------------------------------------------


async def test_channels_session_wrapper_keeps_the_servers_send_as_real_send():
    seen: list[Any] = []

    async def inner(scope: dict, receive: Any, send: Any) -> None:
        seen.append(send)

    async def server_send(message: dict) -> None: ...

    await SessionMiddlewareStack(inner)({"type": "websocket", "headers": []}, None, server_send)
    wrapped = seen[0]
    assert isinstance(getattr(wrapped, "__self__", None), InstanceSessionWrapper), broken(
        "channels",
        "the session middleware no longer sends through InstanceSessionWrapper.send.",
        f"{CONNECTION} (unwrap_send)",
    )
    assert unwrap_send(wrapped) is server_send, broken(
        "channels",
        "InstanceSessionWrapper no longer keeps the server's send as real_send.",
        f"{CONNECTION} (unwrap_send: the fast path would never find daphne's protocol)",
    )


# channels' dispatch closes old database connections; one an earlier test left in the
# shared sync thread would be touched, so the database is allowed here.
@pytest.mark.django_db
async def test_channels_consumer_keeps_the_raw_send_and_an_unknown_layer_is_none():
    seen: dict[str, Any] = {}

    class Probe(AsyncWebsocketConsumer):
        channel_layer_alias = "no-such-layer"

        async def connect(self) -> None:
            seen["base_send"] = self.base_send
            seen["layer"] = self.channel_layer

    async def server_send(message: dict) -> None: ...

    messages = iter([{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}])

    async def receive() -> dict:
        return next(messages)

    await Probe.as_asgi()({"type": "websocket"}, receive, server_send)
    assert seen.get("base_send") is server_send, broken(
        "channels",
        "AsyncConsumer no longer keeps the server's send as base_send.",
        f"{CONSUMER} (Connection(send=self.base_send), close_send(self.base_send))",
    )
    assert seen.get("layer") is None, broken(
        "channels",
        "an unknown channel_layer_alias no longer means no layer.",
        f"{CONSUMER} and {ORIGIN}: every connection would open a layer channel",
    )
    assert {"code", "reason"} <= parameters(AsyncWebsocketConsumer.close), broken(
        "channels", "AsyncWebsocketConsumer.close(code, reason) changed.", CONSUMER
    )


def test_channels_origin_validator_hooks_we_override():
    assert {"application", "allowed_origins"} <= parameters(OriginValidator), broken(
        "channels", "OriginValidator(application, allowed_origins) changed.", ORIGIN
    )
    for name in ("valid_origin", "validate_origin"):
        assert "parsed_origin" in parameters(getattr(OriginValidator, name)), broken(
            "channels", f"OriginValidator.{name}(parsed_origin) changed.", ORIGIN
        )
    assert issubclass(WebsocketDenier, AsyncWebsocketConsumer), broken(
        "channels",
        "WebsocketDenier is no longer a consumer (its channel_layer_alias would be ignored).",
        f"{ORIGIN} (_Denier)",
    )
