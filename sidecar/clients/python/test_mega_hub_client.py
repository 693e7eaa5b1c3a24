"""The Python bridge client against the protocol vectors and a live hub (MEGA_HUB_URL, set by
scripts/test/hub-python.int.test.ts, which starts the real binary)."""

import asyncio
import json
import os
import unittest
import zlib
from pathlib import Path

import websockets

from mega_hub_client import HubClient, ProtocolError, inflate, validate_from_hub, validate_to_hub

VECTORS = Path(__file__).resolve().parents[2] / "protocol" / "vectors"
TOKEN = "secret-a"


def load(name):
    return json.loads((VECTORS / name).read_text("utf-8"))


class Vectors(unittest.TestCase):
    def test_valid_frames_pass(self):
        cases = load("messages.json")["valid"]
        self.assertGreater(len(cases), 30)
        for c in cases:
            check = validate_to_hub if c["direction"] == "toHub" else validate_from_hub
            with self.subTest(c["name"]):
                check(c["frame"])

    def test_invalid_frames_fail(self):
        checked = 0
        for c in load("messages.json")["invalid"]:
            if c.get("schemaValid") and "nesting" in c["name"]:
                continue  # the nesting limit belongs to the hub's parser
            try:
                frame = c["frame"] if "frame" in c else json.loads(c["raw"])
            except json.JSONDecodeError:
                continue
            check = validate_to_hub if c["direction"] == "toHub" else validate_from_hub
            with self.subTest(c["name"]):
                with self.assertRaises(ProtocolError):
                    check(frame)
                checked += 1
        self.assertGreater(checked, 40)

    def test_exchange_frames_are_valid(self):
        # Every frame an exchange script sends or expects (placeholders filled) is valid.
        def fill(v, key=None):
            if v == "$any":
                return "x" if key in ("hubId", "message") else 1
            if isinstance(v, dict):
                return {k: fill(x, k) for k, x in v.items()}
            if isinstance(v, list):
                return [fill(x) for x in v]
            return v

        for s in load("exchanges.json")["scripts"]:
            for st in s["steps"]:
                if "expect" in st:
                    validate_from_hub(fill(st["frame"]))
                elif "send" in st and s["name"] not in ("bad_frames_get_errors_and_the_link_stays",
                                                         "invalid_register_gets_error_then_1008"):
                    validate_to_hub(st["frame"])

    def test_inflate_matches_the_codec_format(self):
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        z = c.compress(b'{"type":"heartbeat","payload":{"ts":1}}') + c.flush(zlib.Z_SYNC_FLUSH)
        self.assertEqual(z[-4:], b"\x00\x00\xff\xff")
        self.assertEqual(json.loads(inflate(z[:-4]))["payload"]["ts"], 1)


def hub_url():
    url = os.environ.get("MEGA_HUB_URL")
    if not url:
        raise RuntimeError("MEGA_HUB_URL is not set: run through scripts/test/hub-python.int.test.ts (npm test)")
    return url


class Live(unittest.IsolatedAsyncioTestCase):
    async def test_register_join_broadcast_direct_receive(self):
        url = hub_url()
        a = await HubClient.connect(url, TOKEN, "py-a", protocol_version=4)
        b = await HubClient.connect(url, TOKEN, "py-b", capabilities=["deflate"])
        try:
            self.assertEqual(a.register_ok["protocolVersion"], 1)
            self.assertEqual(b.register_ok["capabilities"], ["deflate"])
            await b.join("pb-1", "ada", ["room"], {"name": "Ada"})
            joined = await a.recv()
            self.assertEqual(joined, {"type": "join", "payload": {
                "sessionId": "pb-1", "userId": "ada", "channels": ["room"], "metadata": {"name": "Ada"}, "bridgeId": "py-b"}})
            msg = {"text": "héllo " * 400}  # large enough to reach b deflated
            await a.broadcast("room", msg, ns="/chat")
            self.assertEqual(await b.recv(), {"type": "broadcast", "payload": {"channel": "room", "message": msg, "ns": "/chat"}})
            await a.direct("ada", {"n": 1})
            self.assertEqual((await b.recv())["payload"], {"userId": "ada", "message": {"n": 1}})
            # B10: a plain bridge may not disconnect another bridge's session; an admin token may.
            self.assertEqual(a.register_ok["role"], "bridge")
            await a.disconnect("pb-1", "requeue", "rebalance")
            refused = await a.recv()
            self.assertEqual((refused["type"], refused["payload"]["code"]), ("error", "hub.forbidden"))
            admin = await HubClient.connect(url, os.environ["MEGA_HUB_ADMIN_TOKEN"], "py-admin")
            try:
                self.assertEqual(admin.register_ok["role"], "admin")
                await admin.disconnect("pb-1", "requeue", "rebalance")
                self.assertEqual((await b.recv())["payload"], {"sessionId": "pb-1", "mode": "requeue", "reason": "rebalance"})
            finally:
                await admin.close()
            sessions = await a.sync("r1", ["room"])
            self.assertEqual([s["sessionId"] for s in sessions], ["pb-1"])
            # The sender never hears its own broadcast back.
            await b.broadcast("room", 1)
            with self.assertRaises(asyncio.TimeoutError):
                await b.recv(timeout=0.3)
        finally:
            await b.close()
        self.assertEqual(await a.recv(), {"type": "bulk_leave", "payload": {
            "bridgeId": "py-b", "reason": "closed", "sessionIds": ["pb-1"]}})
        await a.close()

    async def test_bad_token_is_refused_with_1008(self):
        with self.assertRaises(ConnectionRefusedError) as cm:
            await HubClient.connect(hub_url(), "wrong", "py-x")
        self.assertIn("1008", str(cm.exception))

    async def test_client_refuses_to_send_invalid_frames(self):
        a = await HubClient.connect(hub_url(), TOKEN, "py-c")
        try:
            with self.assertRaises(ProtocolError):
                await a.join("", "u", [])
            with self.assertRaises(ProtocolError):
                await a.disconnect("s", "ban")
        finally:
            await a.close()


if __name__ == "__main__":
    unittest.main()
