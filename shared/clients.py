"""Google clients, created once per process and only when first needed (cold start stays small).

With FIRESTORE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST / STORAGE_EMULATOR_HOST set, the official clients
talk to the emulators by themselves: no code path differs between local and production.
"""
from __future__ import annotations

import functools


@functools.cache
def firestore_client(project: str):
    from google.cloud import firestore

    return firestore.Client(project=project)


@functools.cache
def publisher_client():
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient()


@functools.cache
def storage_bucket(project: str, bucket: str):
    from google.cloud import storage

    return storage.Client(project=project).bucket(bucket)
