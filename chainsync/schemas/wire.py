"""The fast wire decoder: msgspec structs compiled from the event models, for the ingest hot path.

The pydantic models of :mod:`chainsync.schemas.events` stay the one definition of an event. This module
reads their fields (types, bounds, patterns, defaults) and builds equivalent ``msgspec`` structs, which
decode a well-formed request body several times faster than the models and encode the stored payload
faster still. It is an accelerator, never a second judge:

* it accepts **a subset** of what the models accept (anything it cannot prove valid is left to the models:
  :func:`decode_batch` returns None and the caller validates with pydantic, which also writes the error
  messages);
* what it accepts, it stores **byte for byte** as the models would (:attr:`WireEvent.payload` equals
  ``model_dump_json()``);
* the rules across fields are the models' own functions (:data:`CROSS_FIELD_RULES`), and a model that
  gains a validator or a field type this compiler does not know fails at import, not in production.

``tests/schemas/test_wire.py`` checks both properties on generated events (hypothesis) and mutated ones.

Timestamps are decoded as text matching a strict RFC 3339 pattern (``YYYY-MM-DDTHH:MM:SS[.ffffff]`` and
``Z`` or ``±HH:MM``) and parsed with :meth:`datetime.fromisoformat`; other spellings the models accept
(a space for ``T``, more fractional digits) take the models' path.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from uuid import UUID

import annotated_types
import msgspec
from pydantic import BaseModel, StringConstraints
from pydantic.fields import FieldInfo
from pydantic.functional_validators import AfterValidator, BeforeValidator
from pydantic.types import Strict

from chainsync.schemas.events import (
    ID_PATTERN,
    EventBase,
    InventoryEvent,
    SaleLine,
    _require_text_or_datetime,
    _require_text_or_uuid,
    _to_utc,
    check_inventory_shape,
    check_sale_line,
    omitted_when_none,
)

_BATCH_START = re.compile(rb'\s*\{\s*"events"\s*:')

RFC3339 = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})"
"""The timestamps the fast path takes (a strict subset of what the models parse)."""
UUID_CANONICAL = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
"""The event ids the fast path takes: the form the models store (other spellings take the models' path)."""

# Text checked after decoding, all values of a kind in one regular-expression pass over them joined by
# newlines (one call per batch instead of one per value: the per-value calls were 80 % of the decoding).
# Only patterns that cannot match a newline are joined, and the joined text must hold exactly one
# newline per value, so every value is matched on its own.
_TEXT_KINDS = {"id": ID_PATTERN[1:-1], "uuid": UUID_CANONICAL, "timestamp": RFC3339}
_JOINED = {kind: re.compile(rf"(?:(?:{inner})\n)*") for kind, inner in _TEXT_KINDS.items()}

CROSS_FIELD_RULES: dict[type[BaseModel], Callable[[Any], None]] = {
    SaleLine: check_sale_line,
    InventoryEvent: check_inventory_shape,
}
"""Each model's ``model_validator`` as a function of the decoded object (the same function the model
calls). A model with validators and no entry here is refused by the compiler."""

_KNOWN_VALIDATORS = {_require_text_or_uuid, _require_text_or_datetime, _to_utc}


class WireError(TypeError):
    """A model uses something the wire compiler cannot reproduce exactly."""


def _python_pattern(pattern: str) -> str:
    # pydantic-core's regex engine anchors ``$`` at the very end; Python's ``re`` also before a final
    # newline. ``\Z`` is Python's very end.
    return pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern


def _meta(metadata: list[Any]) -> tuple[dict[str, Any], bool]:
    """msgspec ``Meta`` keywords for pydantic constraint metadata; also whether the value is a timestamp."""
    kw: dict[str, Any] = {}
    timestamp = False
    for item in metadata:
        if isinstance(item, annotated_types.Gt):
            kw["gt"] = item.gt
        elif isinstance(item, annotated_types.Ge):
            kw["ge"] = item.ge
        elif isinstance(item, annotated_types.Lt):
            kw["lt"] = item.lt
        elif isinstance(item, annotated_types.Le):
            kw["le"] = item.le
        elif isinstance(item, annotated_types.MinLen):
            kw["min_length"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            kw["max_length"] = item.max_length
        elif isinstance(item, StringConstraints):
            if item.pattern is not None:
                kw["pattern"] = str(item.pattern)
            if item.min_length is not None:
                kw["min_length"] = item.min_length
            if item.max_length is not None:
                kw["max_length"] = item.max_length
            if item.strip_whitespace or item.to_lower or item.to_upper:
                raise WireError(f"string transformation {item!r} is not reproduced")
        elif isinstance(item, FieldInfo):
            inner, stamp = _meta(item.metadata)
            kw.update(inner)
            timestamp = timestamp or stamp
        elif isinstance(item, BeforeValidator | AfterValidator):
            if item.func not in _KNOWN_VALIDATORS:
                raise WireError(f"validator {item.func!r} is not reproduced")
            timestamp = timestamp or item.func in (_require_text_or_datetime, _to_utc)
        elif isinstance(item, Strict):
            continue  # msgspec never coerces: every type is strict
        else:
            raise WireError(f"constraint {item!r} is not reproduced")
    return kw, timestamp


@dataclass(frozen=True)
class Layout:
    """A compiled model: its struct; its text fields checked after decoding (name, kind; None values of
    optional fields skipped); its fields of nested models (name, layout, whether a list of them); its
    cross-field rule. Timestamps become UTC datetimes once checked (:func:`check_and_finish`)."""

    struct: type[msgspec.Struct]
    text: tuple[tuple[str, str], ...]
    nested: tuple[tuple[str, Nested, bool], ...]
    rule: Callable[[Any], None] | None

    @property
    def stamps(self) -> tuple[str, ...]:
        return tuple(name for name, kind in self.text if kind == "timestamp")


Nested = Layout | dict[type, Layout]
"""A nested field's layout, or for a tagged union the layout of each member struct."""


def _wire_type(annotation: Any, metadata: list[Any]) -> tuple[Any, str | tuple[Layout, bool] | None]:
    """The msgspec type for a field, and what is checked after decoding: a text kind, a nested layout."""
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        return _wire_type(base, [*extra, *metadata])
    if origin in (Union, types.UnionType):
        args = get_args(annotation)
        if len(args) != 2 or type(None) not in args or metadata:
            raise WireError(f"union {annotation!r} is not reproduced")
        (inner,) = (a for a in args if a is not type(None))
        wire, post = _wire_type(inner, [])
        if post is not None and not isinstance(post, str):
            raise WireError(f"optional {annotation!r} of a model is not reproduced")
        return wire | None, post
    kw, timestamp = _meta(metadata)
    if annotation is datetime:
        if not timestamp or kw:
            raise WireError("a datetime must be an aware timestamp (AwareTimestamp)")
        return str, "timestamp"
    if annotation is UUID:
        return str, "uuid"
    if origin is Literal:
        return annotation, None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if kw:
            raise WireError(f"constraints on a nested {annotation.__name__} are not reproduced")
        layout = compile_model(annotation)
        return layout.struct, (layout, False)
    if origin is list:
        (item,) = get_args(annotation)
        if not (isinstance(item, type) and issubclass(item, BaseModel)):
            raise WireError(f"list of {item!r} is not reproduced")
        layout = compile_model(item)
        many: Any = list[layout.struct]  # type: ignore[name-defined]
        return (Annotated[many, msgspec.Meta(**kw)] if kw else many), (layout, True)
    if annotation is str and kw.get("pattern") == ID_PATTERN:
        if set(kw) != {"pattern"}:
            raise WireError("an identifier takes no other constraint")
        return str, "id"
    if annotation is str and "pattern" in kw:
        kw["pattern"] = _python_pattern(kw["pattern"])
    if annotation in (int, str):
        return (Annotated[annotation, msgspec.Meta(**kw)] if kw else annotation), None
    raise WireError(f"type {annotation!r} is not reproduced")


_COMPILED: dict[tuple[type[BaseModel], str | None], Layout] = {}


def compile_model(
    model: type[BaseModel],
    *,
    tag_field: str | None = None,
    overrides: dict[str, tuple[Any, Nested | None, bool]] | None = None,
) -> Layout:
    """The layout of ``model``: its fields in order (fields the model never writes out — ``event_type`` —
    are left out, so a body carrying one takes the models' path).

    ``tag_field`` names a ``Literal`` field of one value that tells the members of a union apart (the
    struct is tagged with it, as msgspec's tagged unions want); ``overrides`` gives the wire type of
    fields the model declares loosely (``name: (type, nested layout or None, is_list)``)."""
    key = (model, tag_field)
    if not overrides and key in _COMPILED:  # (a layout with overrides is the caller's to keep)
        return _COMPILED[key]
    if model.__pydantic_decorators__.model_validators and model not in CROSS_FIELD_RULES:
        raise WireError(f"{model.__name__} has a model validator without a rule in CROSS_FIELD_RULES")
    if model.__pydantic_decorators__.field_validators:
        raise WireError(f"{model.__name__} has field validators, which are not reproduced")
    fields: list[Any] = []
    text: list[tuple[str, str]] = []
    nested: list[tuple[str, Nested, bool]] = []
    tag: str | None = None
    omitted: set[str] = set()
    for name, info in model.model_fields.items():
        if info.exclude:
            continue
        if info.exclude_if is not None:
            if info.exclude_if is not omitted_when_none or info.default is not None:
                raise WireError(f"{model.__name__}.{name}: only exclude_if=omitted_when_none is reproduced")
            omitted.add(name)
        if name == tag_field:
            values = get_args(info.annotation) if get_origin(info.annotation) is Literal else ()
            if len(values) != 1 or not isinstance(values[0], str):
                raise WireError(f"{model.__name__}.{name} is not a one-value Literal tag")
            tag = values[0]
            continue
        if overrides and name in overrides:
            wire, layout, many = overrides[name]
            post: Any = (layout, many) if layout is not None else None
        else:
            wire, post = _wire_type(info.annotation, list(info.metadata))
        if isinstance(post, str):
            text.append((name, post))
        elif post is not None:
            nested.append((name, post[0], post[1]))
        if info.is_required():
            fields.append((name, wire))
        else:
            fields.append((name, wire, info.get_default(call_default_factory=True)))
    options: dict[str, Any] = {"tag_field": tag_field, "tag": tag} if tag_field else {}
    if omitted:
        # msgspec leaves out every field at its default, or none: all of them must be left out when unset.
        defaulted = {n for n, i in model.model_fields.items() if not i.is_required() and not i.exclude}
        if defaulted != omitted:
            raise WireError(f"{model.__name__}: fields {sorted(defaulted - omitted)} would be left out too")
        options["omit_defaults"] = True
    # ``gc=False``: decoded events hold no cycles, and a batch's hundreds of them are then not tracked by
    # the cyclic GC (fewer collections on the ingest path).
    struct = msgspec.defstruct(
        f"Wire{model.__name__}",
        fields,
        forbid_unknown_fields=True,
        kw_only=True,
        module=__name__,
        gc=False,
        **options,
    )
    layout = Layout(struct, tuple(text), tuple(nested), CROSS_FIELD_RULES.get(model))
    if not overrides:
        _COMPILED[key] = layout
    return layout


def check_and_finish(layout: Nested, objs: list[Any]) -> bool:
    """Check every text value of ``objs`` (decoded with ``layout``) and apply the cross-field rules; on
    success turn their timestamps into UTC datetimes and return True. False when anything is wrong."""
    texts: dict[str, list[str]] = {kind: [] for kind in _TEXT_KINDS}
    try:
        _collect(layout, objs, texts)
    except ValueError:
        return False
    for kind, values in texts.items():
        if not values:
            continue
        joined = "\n".join(values) + "\n"
        if joined.count("\n") != len(values) or _JOINED[kind].fullmatch(joined) is None:
            return False
    try:
        _stamp(layout, objs)
    except ValueError:
        return False
    return True


def _by_type(layout: Nested, objs: list[Any]) -> list[tuple[Layout, list[Any]]]:
    if isinstance(layout, Layout):
        return [(layout, objs)]
    groups: dict[type, list[Any]] = {}
    for o in objs:
        groups.setdefault(type(o), []).append(o)
    return [(layout[t], group) for t, group in groups.items()]


def _collect(layout: Nested, objs: list[Any], texts: dict[str, list[str]]) -> None:
    for lay, group in _by_type(layout, objs):
        for name, kind in lay.text:
            texts[kind].extend([v for o in group if (v := getattr(o, name)) is not None])
        for name, inner, many in lay.nested:
            children = (
                [c for o in group for c in getattr(o, name)] if many else [getattr(o, name) for o in group]
            )
            _collect(inner, children, texts)
        if lay.rule is not None:
            for o in group:
                lay.rule(o)


def _stamp(layout: Nested, objs: list[Any]) -> None:
    for lay, group in _by_type(layout, objs):
        for name in lay.stamps:
            for o in group:
                value = getattr(o, name)
                if value is not None:
                    when = datetime.fromisoformat(value)
                    setattr(o, name, when if when.tzinfo is UTC else when.astimezone(UTC))
        for name, inner, many in lay.nested:
            children = (
                [c for o in group for c in getattr(o, name)] if many else [getattr(o, name) for o in group]
            )
            _stamp(inner, children)


class WireEvent(typing.NamedTuple):
    """A decoded event, ready for the inbox: identity columns, the stored payload, and the decoded object
    (read for its figures: ``kind``, ``lines``, ``transaction_id``; ``occurred_at`` is the UTC datetime).
    The fields are those of ``chainsync.ops_store.events.InboxRow``, in the same order."""

    event_id: str
    event_type: str
    store_id: str
    device_id: str
    occurred_at: datetime
    payload: str
    event: Any


class _Decoder:
    def __init__(self, model: type[EventBase], batch_limit: int) -> None:
        self.event_type = str(model.model_fields["event_type"].default)
        self.layout = compile_model(model)
        item: Any = self.layout.struct
        events: Any = Annotated[list[item], msgspec.Meta(min_length=1, max_length=batch_limit)]
        batch = msgspec.defstruct(
            f"Wire{model.__name__}Batch", [("events", events)], forbid_unknown_fields=True, module=__name__
        )
        self.batch_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(batch)
        self.single_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(item)

    def events(self, raw: bytes, row: Callable[..., Any]) -> tuple[list[Any], bool] | None:
        try:
            if _BATCH_START.match(raw, 0, 64):
                decoded, is_batch = self.batch_decoder.decode(raw).events, True
            else:
                decoded, is_batch = [self.single_decoder.decode(raw)], False
        except msgspec.DecodeError:
            return None
        if not check_and_finish(self.layout, decoded):
            return None
        return [event_row(obj, self.event_type, row) for obj in decoded], is_batch


def event_row(obj: Any, event_type: str, row: Callable[..., Any] = WireEvent) -> Any:
    """``row(*fields of WireEvent)`` for a checked event object: its payload written out in the models'
    form (timestamps UTC with ``Z``)."""
    payload = _ENCODE(obj).decode()
    return row(obj.event_id, event_type, obj.store_id, obj.device_id, obj.occurred_at, payload, obj)


_ENCODE = msgspec.json.Encoder().encode


_DECODERS: dict[tuple[type[EventBase], int], _Decoder] = {}


def decode_body(
    model: type[EventBase], raw: bytes, batch_limit: int, *, row: Callable[..., Any] = WireEvent
) -> tuple[list[Any], bool] | None:
    """``(events, is_batch)`` for a body that is one valid event of ``model`` or ``{"events": [...]}``
    of them (at most ``batch_limit``); None when the fast path cannot vouch for it (invalid, or spelled in
    a way only the models read) — then validate with the models. Each event is ``row(*fields)`` with the
    fields of :class:`WireEvent`, in order (the API passes the ops store's ``InboxRow``, which has them)."""
    decoder = _DECODERS.get((model, batch_limit))
    if decoder is None:
        decoder = _DECODERS[(model, batch_limit)] = _Decoder(model, batch_limit)
    return decoder.events(raw, row)
