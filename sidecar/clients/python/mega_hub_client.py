"""Minimal Mega hub bridge client (protocol v1, sidecar/protocol/README.md).

Standard library plus the `websockets` package. It registers, joins sessions, broadcasts, sends
directs and receives what the hub routes to it, validating every frame in both directions with
hand-written checks that mirror the JSON Schemas (and are tested against the same vectors).

    client = await HubClient.connect("ws://127.0.0.1:3100", token="...", bridge_id="py-1")
    await client.join("s-1", "u-1", ["room"])
    await client.broadcast("room", {"text": "hi"})
    frame = await client.recv()          # {"type": "broadcast", "payload": {...}}
"""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any

import websockets

PROTOCOL_VERSION = 1
MAX_ID = 256
TAIL = b"\x00\x00\xff\xff"


class ProtocolError(ValueError):
    """A frame that does not follow the protocol."""


# --- validation (mirrors protocol/schemas) ------------------------------------------------------


def _is_int(v: Any, minimum: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _is_id(v: Any) -> bool:
    return isinstance(v, str) and 1 <= len(v) <= MAX_ID


def _ids(v: Any, lo: int, hi: int | None) -> bool:
    return isinstance(v, list) and lo <= len(v) and (hi is None or len(v) <= hi) and all(_is_id(x) for x in v)


def _str(lo: int, hi: int | None = None):
    return lambda v: isinstance(v, str) and lo <= len(v) and (hi is None or len(v) <= hi)


def _any(_v: Any) -> bool:
    return True


ID, OBJ = _is_id, (lambda v: isinstance(v, dict))
CHANNELS = lambda v: _ids(v, 0, 256)  # noqa: E731
SOME_CHANNELS = lambda v: _ids(v, 1, 256)  # noqa: E731


def _session(v: Any) -> bool:
    return _check_obj(v, {"sessionId": ID, "userId": ID, "bridgeId": ID, "channels": lambda c: _ids(c, 0, None)},
                      {"metadata": OBJ}) is None


# type -> (required fields, optional fields), each field -> predicate
TO_HUB: dict[str, tuple[dict, dict]] = {
    "register": ({"token": _str(1, 4096), "bridgeId": ID},
                 {"instanceId": ID, "protocolVersion": lambda v: _is_int(v, 1),
                  "capabilities": lambda v: isinstance(v, list) and len(v) <= 32 and all(_str(1, 64)(c) for c in v)}),
    "join": ({"sessionId": ID, "userId": ID, "channels": CHANNELS}, {"metadata": OBJ}),
    "leave": ({"sessionId": ID}, {"channels": SOME_CHANNELS}),
    "bulk_leave": ({"sessionIds": lambda v: _ids(v, 1, 10_000)}, {}),
    "metadata": ({"sessionId": ID, "metadata": OBJ}, {}),
    "broadcast": ({"channel": ID, "message": _any}, {"ns": ID, "exceptSessionIds": lambda v: _ids(v, 0, 1024)}),
    "direct": ({"userId": ID, "message": _any}, {"ns": ID}),
    "disconnect": ({"sessionId": ID, "mode": lambda v: v in ("kick", "requeue")},
                   {"reason": lambda v: isinstance(v, str) and len(v.encode()) <= 123}),
    "heartbeat": ({}, {"ts": _is_int}),
    "sync": ({}, {"requestId": _str(1, 64), "channels": SOME_CHANNELS}),
}
FROM_HUB: dict[str, tuple[dict, dict]] = {
    "register_ok": ({"hubId": _str(1), "bridgeId": ID, "protocolVersion": lambda v: _is_int(v, 1),
                     "heartbeatMs": lambda v: _is_int(v, 1), "maxFrameBytes": lambda v: _is_int(v, 1),
                     "capabilities": lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
                     "acceptedAt": _is_int}, {"role": lambda v: v in ("bridge", "admin")}),
    "join": ({"sessionId": ID, "userId": ID, "channels": CHANNELS, "bridgeId": ID}, {"metadata": OBJ}),
    "leave": ({"sessionId": ID, "bridgeId": ID}, {"channels": SOME_CHANNELS}),
    "bulk_leave": ({"bridgeId": ID, "sessionIds": lambda v: _ids(v, 1, None),
                    "reason": lambda v: v in ("left", "closed", "heartbeat_timeout", "replaced", "evicted")}, {}),
    "metadata": ({"sessionId": ID, "metadata": OBJ, "bridgeId": ID}, {}),
    "broadcast": TO_HUB["broadcast"],
    "direct": TO_HUB["direct"],
    "disconnect": TO_HUB["disconnect"],
    "heartbeat": ({"ts": _is_int}, {}),
    "error": ({"code": lambda v: isinstance(v, str) and v.startswith("hub.") and len(v) > 4
               and all(c.islower() or c == "_" for c in v[4:]), "message": lambda v: isinstance(v, str)},
              {"type": lambda v: isinstance(v, str)}),
    "sync": ({"sessions": lambda v: isinstance(v, list) and all(_session(s) for s in v),
              "done": lambda v: isinstance(v, bool)}, {"requestId": _str(1, 64)}),
}


def _check_obj(obj: Any, required: dict, optional: dict) -> str | None:
    if not isinstance(obj, dict):
        return "must be an object"
    for k, ok in required.items():
        if k not in obj:
            return f"missing {k}"
        if not ok(obj[k]):
            return f"bad {k}"
    for k, v in obj.items():
        if k not in required and (k not in optional or not optional[k](v)):
            return f"bad or unknown field {k}"
    return None


def _validate(frame: Any, table: dict[str, tuple[dict, dict]]) -> dict:
    if not isinstance(frame, dict) or set(frame) != {"type", "payload"}:
        raise ProtocolError("a frame is an object with exactly `type` and `payload`")
    spec = table.get(frame["type"]) if isinstance(frame["type"], str) else None
    if spec is None:
        raise ProtocolError(f"unknown type {frame['type']!r}")
    err = _check_obj(frame["payload"], *spec)
    if err:
        raise ProtocolError(f"{frame['type']}: payload {err}")
    return frame


def validate_to_hub(frame: Any) -> dict:
    """Checks a bridge -> hub frame; returns it or raises ProtocolError."""
    return _validate(frame, TO_HUB)


def validate_from_hub(frame: Any) -> dict:
    """Checks a hub -> bridge frame; returns it or raises ProtocolError."""
    return _validate(frame, FROM_HUB)


def inflate(data: bytes) -> str:
    """mega-codec raw deflate message (sync flush, tail stripped) -> text."""
    d = zlib.decompressobj(-15)
    return (d.decompress(data + TAIL) + d.flush(zlib.Z_SYNC_FLUSH)).decode("utf-8")


# --- client ----------------------------------------------------------------------------------------


class HubClient:
    def __init__(self, ws: Any, register_ok: dict):
        self.ws = ws
        self.register_ok = register_ok
        self.heartbeat_ms: int = register_ok["heartbeatMs"]
        self._beat = asyncio.create_task(self._heartbeats())

    @classmethod
    async def connect(cls, url: str, token: str, bridge_id: str, *, protocol_version: int = PROTOCOL_VERSION,
                      capabilities: list[str] | None = None, timeout: float = 5.0) -> HubClient:
        ws = await websockets.connect(url, max_size=None, compression=None, open_timeout=timeout)
        payload: dict[str, Any] = {"token": token, "bridgeId": bridge_id, "protocolVersion": protocol_version}
        if capabilities:
            payload["capabilities"] = capabilities
        await ws.send(json.dumps(validate_to_hub({"type": "register", "payload": payload})))
        try:
            first = _decode(await asyncio.wait_for(ws.recv(), timeout))
        except websockets.ConnectionClosed as e:
            raise ConnectionRefusedError(f"hub closed the link: {e.rcvd.code if e.rcvd else '?'}") from e
        if first["type"] != "register_ok":
            await ws.close()
            raise ProtocolError(f"register failed: {first['payload']}")
        return cls(ws, first["payload"])

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_ms / 2000)
            try:
                await self.send("heartbeat", {})
            except websockets.ConnectionClosed:
                return

    async def send(self, type_: str, payload: dict) -> None:
        await self.ws.send(json.dumps(validate_to_hub({"type": type_, "payload": payload}), ensure_ascii=False))

    async def join(self, session_id: str, user_id: str, channels: list[str], metadata: dict | None = None) -> None:
        p: dict[str, Any] = {"sessionId": session_id, "userId": user_id, "channels": channels}
        if metadata is not None:
            p["metadata"] = metadata
        await self.send("join", p)

    async def leave(self, session_id: str, channels: list[str] | None = None) -> None:
        await self.send("leave", {"sessionId": session_id, **({"channels": channels} if channels else {})})

    async def broadcast(self, channel: str, message: Any, ns: str | None = None) -> None:
        await self.send("broadcast", {"channel": channel, "message": message, **({"ns": ns} if ns else {})})

    async def direct(self, user_id: str, message: Any) -> None:
        await self.send("direct", {"userId": user_id, "message": message})

    async def disconnect(self, session_id: str, mode: str = "kick", reason: str | None = None) -> None:
        await self.send("disconnect", {"sessionId": session_id, "mode": mode, **({"reason": reason} if reason else {})})

    async def sync(self, request_id: str, channels: list[str] | None = None) -> list[dict]:
        """Presence snapshot; frames arriving before the reply stay queued for recv()."""
        await self.send("sync", {"requestId": request_id, **({"channels": channels} if channels else {})})
        sessions: list[dict] = []
        while True:
            f = await self.recv()
            if f["type"] == "sync" and f["payload"].get("requestId") == request_id:
                sessions += f["payload"]["sessions"]
                if f["payload"]["done"]:
                    return sessions

    async def recv(self, timeout: float = 5.0) -> dict:
        """Next frame from the hub other than a heartbeat, validated."""
        while True:
            f = _decode(await asyncio.wait_for(self.ws.recv(), timeout))
            if f["type"] != "heartbeat":
                return f

    async def close(self) -> None:
        self._beat.cancel()
        await self.ws.close()


def _decode(data: str | bytes) -> dict:
    text = inflate(data) if isinstance(data, bytes) else data
    return validate_from_hub(json.loads(text))


async def _demo(url: str, token: str, bridge_id: str, channel: str) -> None:
    c = await HubClient.connect(url, token, bridge_id)
    await c.join(f"{bridge_id}#listener", f"bridge:{bridge_id}", [channel])
    print(f"registered as {bridge_id} (protocol v{c.register_ok['protocolVersion']}); listening on {channel}", flush=True)
    while True:
        try:
            print(json.dumps(await c.recv(timeout=3600)), flush=True)
        except asyncio.TimeoutError:
            continue


if __name__ == "__main__":
    import argparse
    import os

    ap = argparse.ArgumentParser(description="Join a hub channel and print what the hub routes here.")
    ap.add_argument("--url", default="ws://127.0.0.1:3100")
    ap.add_argument("--bridge-id", default="python")
    ap.add_argument("--channel", default="lobby")
    a = ap.parse_args()
    token = os.environ.get("MEGA_WSHUB_TOKEN") or os.environ.get("MEGA_WSHUB_TOKENS", "").split(",")[0]
    asyncio.run(_demo(a.url, token, a.bridge_id, a.channel))
