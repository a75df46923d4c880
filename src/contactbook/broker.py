"""The broker connection Celery uses: kombu's, with one fix to its Redis transport.

When Redis dies while a worker holds an unacknowledged task (every task runs acks_late,
so any task that is running), kombu 5.7's Redis transport crashes the worker instead of
reconnecting: Celery's consumer closes the broken connection twice (``collect()``, then
``close()``); the first close clears the transport's link to its connection, and the
second close tries to give the unacknowledged messages back to Redis, which needs a new
connection pool, which reads the connection's settings through that cleared link:
``AttributeError: 'NoneType' object has no attribute 'hostname'`` in ``_connparams`` <-
``restore_unacked`` <- ``Channel.close``, an "unrecoverable error" that stops the worker.
It happens with ``redis://`` as with ``redis+socket://`` (reproduced with both on kombu
5.7.0, the newest release; tests/test_faults.py kills Redis under a worker).

A task that was running through the outage then crashes the worker the same way when it
finishes and its message is acknowledged on the dead connection.

The fix: once the connection is gone, the messages cannot be given back, nor a finished
task acknowledged (Redis is not there to take either), so both are skipped with one
warning, and any other use of the closed channel is a connection error, which Celery
handles by reconnecting, instead of an AttributeError. Nothing is lost by that: kombu
wrote each message into Redis's ``unacked`` hash before handing it to the worker, and
the Redis transport puts messages from that hash back on the queue after the visibility
timeout (``BROKER_VISIBILITY_TIMEOUT``); the worker reconnects as soon as Redis is back.
(The embedded Redis keeps an append-only file, so the hash outlives a crash of Redis.)

This reaches into kombu's Redis transport (its QoS class, ``Channel.QoS``,
``Channel._get_pool`` and ``Transport.Channel``), so kombu is pinned to 5.7.x in
pyproject.toml, and tests/test_faults.py fails, saying so, when those internals change.
"""

from __future__ import annotations

import logging

import redis
from celery.app.amqp import AMQP
from kombu import Connection
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)


def _cut_off(channel: kombu_redis.Channel) -> bool:
    """Whether the channel's connection was closed (its transport, or the transport's
    link to the connection, is gone): nothing sent through it can reach Redis."""
    transport = channel.connection
    return transport is None or transport.client is None


class _RedisQoS(kombu_redis.QoS):
    def restore_unacked(self, client=None):
        if client is None and _cut_off(self.channel):
            log.warning(
                "the broker connection was lost with %d task(s) not yet acknowledged; "
                "they return to the queue after the visibility timeout "
                "(BROKER_VISIBILITY_TIMEOUT)",
                len(self._delivered),
            )
            return None
        return super().restore_unacked(client)

    def ack(self, delivery_tag):
        if _cut_off(self.channel):
            # A task that ran through the outage ends on a connection that is gone; its
            # message is still in Redis's unacked hash and runs again after the visibility
            # timeout (every task is safe to run twice: see worker.py).
            log.warning(
                "a task finished after the broker connection it came from was lost; it "
                "runs again after the visibility timeout (BROKER_VISIBILITY_TIMEOUT)"
            )
            return None
        return super().ack(delivery_tag)


class _RedisChannel(kombu_redis.Channel):
    QoS = _RedisQoS

    def _get_pool(self, asynchronous=False):
        # Any other use of a closed channel: a connection error, which kombu and Celery
        # handle (reconnect), rather than an AttributeError, which stops the worker.
        if _cut_off(self):
            raise redis.exceptions.ConnectionError("the broker connection was closed")
        return super()._get_pool(asynchronous=asynchronous)


class RedisTransport(kombu_redis.Transport):
    """kombu's Redis transport, surviving Redis dying mid-task."""

    Channel = _RedisChannel


class BrokerConnection(Connection):
    """A kombu Connection that uses :class:`RedisTransport` for ``redis://`` and
    ``redis+socket://`` URLs (every other transport as kombu resolves it)."""

    def get_transport_cls(self):
        transport_cls = super().get_transport_cls()
        return RedisTransport if transport_cls is kombu_redis.Transport else transport_cls


class ContactBookAMQP(AMQP):
    """Celery's messaging layer, connecting through :class:`BrokerConnection`."""

    Connection = BrokerConnection


__all__ = ["BrokerConnection", "ContactBookAMQP", "RedisTransport"]
