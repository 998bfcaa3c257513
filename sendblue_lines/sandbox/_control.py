"""The control API: the sandbox's ledger, clock, faults and account over HTTP.

Served under ``/_sandbox/`` on the sandbox's own port, so that a service
under test in another process, in any language, can do what `Sandbox`'s
methods do in-process. A call needs the two credential headers of one of
the sandbox's accounts, checked as the API checks them (401 otherwise), and
acts on that account: its ledger, its limits, card and plan. The clock, the
faults and the inventory belong to the whole sandbox.

Every body is checked whole before anything changes: an unknown field, fault
or argument, or a value of the wrong JSON type, is a 400 that names it, and
changes nothing. Control calls are no API requests: they get no latency and
no fault, and are neither logged nor counted; nor is a wrong method or an
unknown path under ``/_sandbox/`` (a 405 or 404 with the API's error body).
"""

from __future__ import annotations

import inspect
import json
import math
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Union, get_args, get_origin, get_type_hints

import attrs
from aiohttp import web

from ._clock import ManualClock, format_timestamp
from ._faults import ENDPOINTS, Fault
from ._runtime import Runtime, read_body, runtime_of
from ._state import Refusal, SandboxAccount, json_object, signed_in

__all__ = ["CALLS", "CONTROLS", "CONTROL_PREFIX", "FAULTS", "add_control_routes"]

#: Where the control API's paths start.
CONTROL_PREFIX = "/_sandbox/"

#: Every fault by name: `Fault`'s class methods are the catalogue.
FAULTS: dict[str, Callable[..., Fault]] = {
    name: getattr(Fault, name)
    for name, member in vars(Fault).items()
    if isinstance(member, classmethod)
}

#: What ``POST /_sandbox/account`` may set: the account's fields that can
#: change, and the sandbox's inventory (None: unlimited).
_ACCOUNT_FIELDS: dict[str, Any] = {
    **{
        field.name: get_type_hints(SandboxAccount)[field.name]
        for field in attrs.fields(SandboxAccount)
        if field.on_setattr is not attrs.setters.frozen
    },
    "inventory": int | None,
}
_FAULT_FIELDS = {"endpoint": str, "fault": str, "times": int, "args": dict[str, object]}
_JSON_NAMES = {
    int: "a whole number >= 0",
    float: "a number >= 0",
    bool: "true or false",
    str: "a non-empty string",
    bytes: "a string",
    type(None): "null",
}


def _bad(message: str) -> Refusal:
    return Refusal(400, None, message)


def _options(hint: Any) -> tuple[Any, ...]:
    return get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)


def _describe(hint: Any) -> str:
    names = []
    for option in _options(hint):
        if get_origin(option) in (dict, Mapping):
            each = _describe(get_args(option)[1])
            names.append(f"an object whose values are each {each}")
        else:
            names.append(_JSON_NAMES.get(option, "any JSON value"))
    return " or ".join(names)


def _fits(value: Any, option: Any) -> bool:
    if get_origin(option) in (dict, Mapping):
        each = get_args(option)[1]
        return isinstance(value, dict) and all(_fits(v, each) for v in value.values())
    if option is float:
        try:
            return type(value) in (int, float) and math.isfinite(value) and value >= 0
        except OverflowError:  # a JSON whole number too large for a float
            return False
    if option is int:
        return type(value) is int and value >= 0
    if option is str:
        return type(value) is str and value != ""
    # A JSON string stands for bytes; bool, null and object are themselves.
    as_json = {bytes: str, bool: bool, type(None): type(None), object: object}
    return option in as_json and isinstance(value, as_json[option])


def _checked(
    body: Mapping[str, Any],
    hints: Mapping[str, Any],
    required: tuple[str, ...] = (),
    noun: str = "field",
) -> dict[str, Any]:
    """Return ``body``'s values as the ``hints`` type them (a JSON string as bytes).

    Raises:
        Refusal: 400 naming the first unknown or missing name, or bad value.
    """
    unknown = sorted(set(body) - set(hints))
    if unknown:
        known = ", ".join(hints) or "none"
        raise _bad(f"unknown {noun} {unknown[0]!r} (known: {known})")
    missing = [name for name in required if name not in body]
    if missing:
        raise _bad(f"missing {noun} {missing[0]!r}")
    checked = {}
    for name, value in body.items():
        hint = hints[name]
        if not any(_fits(value, option) for option in _options(hint)):
            shown = json.dumps(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise _bad(f"{noun} {name!r} must be {_describe(hint)}, not {shown}")
        checked[name] = value.encode() if hint is bytes else value
    return checked


# -- the four calls -------------------------------------------------------------


def _ledger(runtime: Runtime, account: SandboxAccount, body: Any) -> Any:
    charges = [
        {
            "preview_token": charge.preview_token,
            "phone_number": charge.phone_number,
            "worker_id": charge.worker_id,
            "subscription_id": charge.subscription_id,
            "at": format_timestamp(charge.charged_at),
        }
        for charge in runtime.state.ledger
        if charge.api_key_id == account.api_key_id
    ]
    return {"charges": charges}


def _clock(runtime: Runtime, account: SandboxAccount, body: Any) -> Any:
    hints = {"advance_seconds": float}
    seconds = _checked(body, hints, required=("advance_seconds",))["advance_seconds"]
    clock = runtime.state.clock
    if not isinstance(clock, ManualClock):
        raise Refusal(409, None, f"this sandbox's clock cannot be moved: {clock!r}")
    try:
        return {"now": format_timestamp(clock.advance(seconds=seconds))}
    except (OverflowError, ValueError):
        raise _bad(f"advance_seconds {seconds} goes past the year 9999") from None


def _faults(runtime: Runtime, account: SandboxAccount, body: Any) -> Any:
    fields = _checked(body, _FAULT_FIELDS, required=("endpoint", "fault"))
    endpoint, name = fields["endpoint"], fields["fault"]
    if endpoint not in ENDPOINTS:
        raise _bad(f"unknown endpoint {endpoint!r}: use one of {', '.join(ENDPOINTS)}")
    if name not in FAULTS:
        raise _bad(f"unknown fault {name!r}: use one of {', '.join(FAULTS)}")
    build = FAULTS[name]
    parameters = inspect.signature(build).parameters
    hints = get_type_hints(build)
    required = tuple(n for n, p in parameters.items() if p.default is p.empty)
    args = _checked(
        fields.get("args", {}),
        {n: hints[n] for n in parameters},
        required,
        noun=f"argument of {name}",
    )
    try:
        fault = build(**args)
        runtime.faults.inject(endpoint, fault, fields.get("times", 1))
    except ValueError as error:
        raise _bad(str(error)) from None
    return {"queued": runtime.faults.pending(endpoint)}


def _account(runtime: Runtime, account: SandboxAccount, body: Any) -> Any:
    changes = _checked(body, _ACCOUNT_FIELDS)
    runtime.state.set_inventory(changes.pop("inventory", runtime.state.inventory))
    for name, value in changes.items():
        setattr(account, name, value)
    secret = attrs.fields(SandboxAccount).api_secret_key
    shown = attrs.asdict(account, filter=attrs.filters.exclude(secret))
    return {**shown, "inventory": runtime.state.inventory}


Control = Callable[[Runtime, SandboxAccount, Any], Any]

#: Each call by its path under `CONTROL_PREFIX`: its method and what it does.
CONTROLS: dict[str, tuple[str, Control]] = {
    "ledger": ("GET", _ledger),
    "clock": ("POST", _clock),
    "faults": ("POST", _faults),
    "account": ("POST", _account),
}


#: The calls, as the command's banner names them.
CALLS = ", ".join(
    f"{method} {CONTROL_PREFIX}{name}" for name, (method, _) in CONTROLS.items()
)


def add_control_routes(app: web.Application) -> None:
    """Serve `CONTROLS` under ``/_sandbox/`` in ``app``, on its runtime."""

    def handler(control: Control) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            runtime = runtime_of(request)
            try:
                account = signed_in(runtime.state.authenticate(request.headers))
                body = None
                if request.method == "POST":
                    message = "The body must be a JSON object"
                    body = json_object(await read_body(request), message)
                return web.json_response(control(runtime, account, body))
            except Refusal as refusal:
                return web.json_response(refusal.body(), status=refusal.status)

        return handle

    for name, (method, control) in CONTROLS.items():
        app.router.add_route(method, CONTROL_PREFIX + name, handler(control))
