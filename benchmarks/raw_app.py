"""Arm A: a raw ASGI WebSocket broadcast, no framework. The floor we compare against.

WebSocket ``/ws/<topic>`` subscribes to a topic; ``POST /trigger?topic=T`` (body: JSON
record) encodes the frame once and sends it to every subscriber of T. With REDIS_URL the
trigger publishes to Redis and one subscriber task per process fans out, like a hub.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qs

subscribers: dict[str, set[Any]] = defaultdict(set)
REDIS_URL = os.environ.get("REDIS_URL")
_redis: Any = None
_listener: asyncio.Task[None] | None = None


async def fan_out(topic: str, text: str) -> None:
    for send in tuple(subscribers.get(topic, ())):
        try:
            await send({"type": "websocket.send", "text": text})
        except Exception:
            subscribers[topic].discard(send)


async def redis_listener() -> None:
    pubsub = _redis.pubsub()
    await pubsub.psubscribe("rawbench.*")
    async for message in pubsub.listen():
        if message["type"] == "pmessage":
            await fan_out(message["channel"].decode()[len("rawbench.") :], message["data"].decode())


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _redis, _listener
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            if message["type"] == "lifespan.startup":
                if REDIS_URL:
                    import redis.asyncio

                    _redis = redis.asyncio.Redis.from_url(REDIS_URL)
                    _listener = asyncio.ensure_future(redis_listener())
                await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "websocket":
        topic = scope["path"].rsplit("/", 1)[-1]
        await receive()
        await send({"type": "websocket.accept"})
        subscribers[topic].add(send)
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass
        finally:
            subscribers[topic].discard(send)
        return
    # HTTP trigger
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    query = parse_qs(scope["query_string"].decode())
    topics = [query.get("topic", ["1"])[0], *query.get("also", [])]
    record = json.loads(body or b"{}")
    now = time.time() * 1000
    frame = {"id": record.get("id"), "localTime": now, "value": record, "version": now, "type": "put"}
    text = json.dumps(frame, separators=(",", ":"))  # the same frame as harper_resources sends
    for topic in topics:
        if _redis is not None:
            await _redis.publish(f"rawbench.{topic}", text)
        else:
            await fan_out(topic, text)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
