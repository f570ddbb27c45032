"""Test helpers that look at the emulators directly through the official clients."""
from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from local import stack as stack_module


def db():
    from google.cloud import firestore

    return firestore.Client(project=stack_module.PROJECT)


def bucket():
    from shared.wiring import storage_bucket

    return storage_bucket(stack_module.PROJECT, stack_module.BUCKET)


def settings():
    """The settings the local stack gives every function (its environment is the test process's)."""
    from shared.config import load_settings

    return load_settings()


def store(db=None, bucket=None):
    """The repositories and object store, wired as the functions wire them (optionally over other clients)."""
    from shared import wiring

    return wiring.store(settings(), db=db, bucket=bucket)


def _walk(document_refs, into: dict[str, Any]) -> None:
    for ref in document_refs:
        snapshot = ref.get()
        if snapshot.exists:
            into[ref.path] = snapshot.to_dict()
        for sub in ref.collections():
            _walk(sub.list_documents(), into)


def firestore_snapshot() -> dict[str, Any]:
    """Every document in the emulator (including ones only reachable through subcollections)."""
    documents: dict[str, Any] = {}
    for collection in db().collections():
        _walk(collection.list_documents(), documents)
    return documents


def bucket_snapshot() -> dict[str, tuple[bytes, dict]]:
    return {blob.name: (blob.download_as_bytes(), dict(blob.metadata or {})) for blob in bucket().list_blobs()}


def world() -> tuple[dict[str, Any], dict[str, tuple[bytes, dict]]]:
    return firestore_snapshot(), bucket_snapshot()


class Tap:
    """A pull subscription on a topic, to see what was published."""

    def __init__(self, topic: str):
        from google.cloud import pubsub_v1

        self.subscriber = pubsub_v1.SubscriberClient()
        self.path = self.subscriber.subscription_path(stack_module.PROJECT, f"tap-{uuid.uuid4().hex[:12]}")
        self.subscriber.create_subscription(
            request={"name": self.path, "topic": f"projects/{stack_module.PROJECT}/topics/{topic}"})

    def pull(self, expected: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(messages) < expected and time.monotonic() < deadline:
            response = self.subscriber.pull(request={"subscription": self.path, "max_messages": 100},
                                            timeout=5)
            if response.received_messages:
                self.subscriber.acknowledge(request={"subscription": self.path, "ack_ids": [
                    m.ack_id for m in response.received_messages]})
            messages += [json.loads(m.message.data) for m in response.received_messages]
        return messages

    def close(self) -> None:
        self.subscriber.delete_subscription(request={"subscription": self.path})


@contextlib.contextmanager
def own_topic(prefix: str) -> Iterator[tuple[str, Tap]]:
    """A topic of its own (`prefix-<random>`) and a Tap on it, both removed afterwards: a test sees exactly
    what was published to it."""
    from shared.wiring import publisher_client

    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    client = publisher_client()
    client.create_topic(name=client.topic_path(stack_module.PROJECT, name))
    tap = Tap(name)
    try:
        yield name, tap
    finally:
        tap.close()
        client.delete_topic(topic=client.topic_path(stack_module.PROJECT, name))
