"""The enqueue path's publish: every message of a batch in one Redis round trip.

``jobs.dispatch.publish`` sends one message per ``app.send_task``: Celery's whole send
path and one LPUSH round trip per task, about what a raw ``.delay()`` costs. Here
Celery's own ``send_task`` builds the first message of each kind (task, queue,
priority, time limits) and kombu's producer prepares it (serialised body, body
encoding, delivery info), but it is captured instead of pushed. The others of that
kind are the same message with their own id, arguments and delivery tag, exactly as
Celery would have built them; every message is then LPUSHed onto kombu's list for its
queue and priority, all in one pipeline.

Where that could differ from Celery's own publish (not kombu's Redis transport,
receivers on Celery's publish signals, task-sent events, compression, message
protocol 1, queues with an expiry) ``jobs.dispatch.publish`` sends them one by one.
A failed pipeline leaves nothing unaccounted for: ``jobs.dispatch.publish`` then sends
them all again (a duplicate is dropped by the claim) or, with the broker down, un-marks
them for the dispatch sweep. A message that cannot be built (a corrupt row) goes the same way, so
it is quarantined there as before.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from celery import signals
from celery.utils.saferepr import saferepr
from kombu.serialization import dumps as serialize
from kombu.utils.json import JSONEncoder

from jobs.dispatch import Dispatch, publish

log = logging.getLogger(__name__)

_JSON = ("application/json", "utf-8")  # what kombu's json serializer says it wrote
_encode = JSONEncoder().encode  # kombu.utils.json.dumps, without a new encoder per call
LPUSH_CHUNK = 500  # values per LPUSH: bounded command size, still one round trip per pipeline


@dataclass(frozen=True, slots=True)
class _Template:
    """One message as Celery built it and kombu prepared it, and the lists it goes to."""

    message: dict[str, Any]
    keys: tuple[str, ...]
    embed: Any  # the body's third part (callbacks, errbacks, chain, chord)
    own_root: bool  # root_id is the task's own id (no parent task)


class _Capture:
    """Takes the place of kombu's batch state (``Producer.batch()``) for one send: keeps
    the prepared message instead of handing it to the transport."""

    def __init__(self) -> None:
        self.sent: tuple[dict[str, Any], str, str] | None = None

    def publish(self, channel: Any, message: dict[str, Any], **kwargs: Any) -> None:
        self.sent = (message, kwargs["exchange"], kwargs["routing_key"])


KEPT_TEMPLATES = 256  # kinds of message kept per channel and thread
_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_kept: weakref.WeakKeyDictionary[Any, dict[Any, dict[Any, _Template]]] = weakref.WeakKeyDictionary()


def publish_pipelined(app: Any, dispatches: Iterable[Dispatch], *, grace_s: float) -> int:
    """Publish ``dispatches``; the contract of ``jobs.dispatch.publish`` (never raises,
    returns how many went out)."""
    dispatches = list(dispatches)
    if not dispatches:
        return 0
    if not _exact(app):
        return publish(app, dispatches, grace_s=grace_s)
    try:
        with app.producer_or_acquire() as producer:
            channel = producer.channel
            if not _exact_channel(producer, channel):
                return publish(app, dispatches, grace_s=grace_s)
            pushes, rest = _build(app, producer, channel, dispatches, grace_s)
            _push(_client(channel), pushes)
    except Exception as exc:
        # Unknown how much went out: send them all the careful way (the claim drops a
        # duplicate; with the broker down that un-marks them for the dispatch sweep).
        log.warning("pipelined publish failed (%s); publishing one by one", exc.__class__.__name__)
        return publish(app, dispatches, grace_s=grace_s)
    return len(dispatches) - len(rest) + (publish(app, rest, grace_s=grace_s) if rest else 0)


def _exact(app: Any) -> bool:
    """Nothing of Celery's per-message send would be skipped (signals, sent events)."""
    conf = app.conf
    if conf.task_send_sent_event or conf.task_compression or conf.task_protocol != 2:
        return False  # (protocol 1 carries the id and arguments elsewhere)
    watched = (signals.before_task_publish, signals.after_task_publish, signals.task_sent)
    return not any(getattr(signal, "receivers", None) for signal in watched)


def _exact_channel(producer: Any, channel: Any) -> bool:
    """kombu's Redis channel with the hooks used here, and a producer that batches."""
    needed = ("_q_for_pri", "_inplace_augment_message", "_get_message_priority", "_lookup")
    return (
        all(hasattr(channel, name) for name in needed)
        and hasattr(producer, "_batch_local")
        and getattr(producer._batch_local, "current", None) is None  # not inside a batch
        and not getattr(channel, "_expires", None)
    )


def _build(
    app: Any, producer: Any, channel: Any, dispatches: Sequence[Dispatch], grace_s: float
) -> tuple[dict[str, list[str]], list[Dispatch]]:
    """The serialised messages per list key, and what must go the careful way."""
    templates = _templates(app, channel, grace_s)
    reprs: dict[str, tuple[str, str]] = {}
    pushes: dict[str, list[str]] = {}
    rest: list[Dispatch] = []
    for d in dispatches:
        try:
            kind = (d.name, d.queue, d.broker_priority, d.timeout_s)
            template = templates.get(kind)
            if template is None:  # Celery builds this one itself
                template = _template(app, producer, channel, d, grace_s)
                text = _encode(template.message)
                templates[kind] = template
            else:
                text = _encode(_like(app, channel, template, d, reprs))
        except Exception:
            rest.append(d)  # jobs.dispatch.publish quarantines it if it is corrupt
            continue
        for key in template.keys:
            pushes.setdefault(key, []).append(text)
    return pushes, rest


def _templates(app: Any, channel: Any, grace_s: float) -> dict[Any, _Template]:
    """Where this publish keeps its templates. Outside a task they are kept per channel
    and thread (the reply-to address is the thread's) for later publishes: a ``.delay()``
    then costs one message built from its template and one LPUSH. Inside a task, Celery
    gives each message the running task as parent: built afresh each time."""
    if app.current_worker_task is not None:
        return {}
    per_channel = _kept.get(channel)
    if per_channel is None:
        per_channel = _kept[channel] = {}
    key = (threading.get_ident(), grace_s, id(app.amqp.router))
    kept = per_channel.get(key)
    if kept is None or len(kept) > KEPT_TEMPLATES:
        kept = per_channel[key] = {}
    return kept


def _template(app: Any, producer: Any, channel: Any, d: Dispatch, grace_s: float) -> _Template:
    capture = _Capture()
    producer._batch_local.current = capture
    try:
        app.send_task(
            d.name,
            args=d.args,
            kwargs=d.kwargs,
            task_id=str(d.id),
            queue=d.queue,
            priority=d.broker_priority,
            soft_time_limit=d.timeout_s,
            time_limit=d.timeout_s + grace_s,
            producer=producer,
            taskledger_internal=True,  # the row exists: workers.app sends it as is
        )
    finally:
        del producer._batch_local.current
    if capture.sent is None:
        raise RuntimeError("Celery's send_task published nothing")
    message, exchange, routing_key = capture.sent
    channel._inplace_augment_message(message, exchange, routing_key)  # basic_publish's step
    queues = channel._lookup(exchange, routing_key) if exchange else [routing_key]
    pri = channel._get_message_priority(message, reverse=False)
    body = json.loads(channel.decode_body(message["body"], message["properties"]["body_encoding"]))
    return _Template(
        message=message,
        keys=tuple(channel._q_for_pri(queue, pri) for queue in queues),
        embed=body[2],
        own_root=message["headers"].get("root_id") == str(d.id),
    )


def _like(
    app: Any, channel: Any, t: _Template, d: Dispatch, reprs: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """``t``'s message for ``d``: what Celery and kombu would have built for it."""
    task_id = str(d.id)
    message = t.message
    if (message["content-type"], message["content-encoding"]) == _JSON:
        body = _encode((d.args, d.kwargs, t.embed))  # kombu's json serializer, one encoder
    else:
        _type, _encoding, body = serialize((d.args, d.kwargs, t.embed), app.conf.task_serializer)
        if (_type, _encoding) != (message["content-type"], message["content-encoding"]):
            raise ValueError(f"serialised as {_type}, unlike its template")
    shown = reprs.get(body)
    if shown is None:  # Celery's argsrepr/kwargsrepr (amqp.as_task_v2: empty args are "()")
        amqp, depth = app.amqp, app.conf.task_repr_maxlevels
        shown = reprs[body] = (
            saferepr(d.args or (), amqp.argsrepr_maxsize, maxlevels=depth),
            saferepr(d.kwargs or {}, amqp.kwargsrepr_maxsize, maxlevels=depth),
        )
    headers = message["headers"].copy()
    headers["id"] = task_id
    headers["argsrepr"], headers["kwargsrepr"] = shown
    if t.own_root:
        headers["root_id"] = task_id
    properties = message["properties"].copy()
    properties["correlation_id"] = task_id
    properties["delivery_tag"] = channel._next_delivery_tag()
    out = message.copy()
    out["body"] = channel.encode_body(body, properties["body_encoding"])[0]
    out["headers"] = headers
    out["properties"] = properties
    return out


def _client(channel: Any) -> Any:
    """One Redis client per producer channel (kombu makes a new one per publish)."""
    client = _clients.get(channel)
    if client is None:
        client = _clients[channel] = channel._create_client()
    return client


def _push(client: Any, pushes: dict[str, list[str]]) -> None:
    """Every message in one round trip. LPUSH of a, b, c leaves them as three LPUSHes
    would: the consumer's BRPOP takes a first."""
    if not pushes:
        return
    if len(pushes) == 1:
        ((key, texts),) = pushes.items()
        if len(texts) <= LPUSH_CHUNK:  # one command: no pipeline needed (a .delay())
            client.lpush(key, *texts)
            return
    with client.pipeline(transaction=False) as pipe:
        for key, texts in pushes.items():
            for i in range(0, len(texts), LPUSH_CHUNK):
                pipe.lpush(key, *texts[i : i + LPUSH_CHUNK])
        pipe.execute()
