"""The dashboard's guard: every request is checked here before Dash sees it, and every answer leaves here
with the same security headers. One place, so that no callback needs to defend itself against requests
that no page of ours sends.

- **Hosts.** Only the names the server was started for are answered (127.0.0.1, localhost, ::1 and the
  ``--host`` given; for a wildcard bind such as 0.0.0.0, any IP literal too): a page on another site that
  re-points its own DNS name at 127.0.0.1 (DNS rebinding) gets 421, never a store's text.
- **Callback requests** (``/_dash-update-component``) must have the shape Dash's renderer sends for a
  callback of this app: the callback's own outputs, as many inputs and states as it declares, each for
  the component and property it declares, JSON nested at most ``MAX_DEPTH`` deep, every number finite,
  and each value of the type its component sends (a number box sends a number or nothing, a button a
  click count, a static drop-down one of its options). Anything else is a 400 with a one-line reason.
- **Callback errors.** An exception inside a callback becomes a message in the page's status line and
  one line in the log (no traceback): :func:`report_error`, Dash's ``on_error``.
- **Headers.** ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``, a Content-Security-Policy
  that allows only this origin (plus the inline style Dash and Plotly write, and the hash of Dash's one
  inline script), ``Referrer-Policy: no-referrer``; Werkzeug's ``Server`` header says ``rnnviz``, no versions.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
from collections.abc import Iterable

import dash
import flask
from dash import dcc, html
from dash.exceptions import DependencyException
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler

from rnnviz.errors import RnnvizError

MAX_REQUEST_BYTES = 1 << 20  # a callback request is a few kB; a larger body is refused (413) unread
MAX_DEPTH = 32  # JSON nesting in a callback body (a view is 3 deep; Dash's own wrapping adds 3)
MAX_STRING = 100_000  # characters in one string of a callback body
LOOPBACK = ("127.0.0.1", "localhost", "::1")
UPDATE = "/_dash-update-component"

log = logging.getLogger("rnnviz.views.dashboard")


def callback_body(deps, output: str, values: dict | None = None, changed: str | None = None) -> dict:
    """The body the page sends to :data:`UPDATE` for the callback one of whose outputs is ``output`` ("id.prop", or
    the callback's whole key in ``deps``):
    the shape this module checks, built in one place for the tests and the benchmarks that drive callbacks
    without a browser.

    ``deps``: the app's callbacks, as ``app.callback_map`` or the JSON list of ``/_dash-dependencies``.
    ``values``: "id.prop" -> what the page holds (a property not given is sent without a value; pattern-
    matching inputs, such as table rows, are sent empty, as before any table). ``changed``: the input that
    fired (default the first)."""
    items = list(deps.items() if isinstance(deps, dict) else ((d["output"], d) for d in deps))
    outputs = {k: [o.split("@")[0] for o in k.strip(".").split("...")] for k, _ in items}
    # the callback of that key (two callbacks may share a first output: allow_duplicate); else the one whose first
    # output it is; else the one that has it among others
    key, cb = next((kd for kd in items if kd[0] == output), None) or next(
        (kd for kd in items if outputs[kd[0]][0] == output), None) or next(
        kd for kd in items if output in outputs[kd[0]])
    values = values or {}

    def item(d):
        if d["id"].startswith("{"):
            return []
        name = f"{d['id']}.{d['property']}"
        return {"id": d["id"], "property": d["property"], **({"value": values[name]} if name in values else {})}

    outs = [dict(zip(("id", "property"), o.rsplit(".", 1), strict=True)) for o in key.strip(".").split("...")]
    outs = [{**o, "property": o["property"].split("@")[0]} for o in outs]
    first = f"{cb['inputs'][0]['id']}.{cb['inputs'][0]['property']}"
    return {"output": key, "outputs": outs if key.startswith("..") else outs[0],
            "inputs": [item(d) for d in cb["inputs"]], "state": [item(d) for d in cb.get("state", [])],
            "changedPropIds": [changed or first]}


def install(app: dash.Dash, hosts: Iterable[str] = ()) -> None:
    """Attach the guard to ``app`` (after its layout and callbacks are set)."""
    server = app.server
    server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    allowed = {h.lower().strip("[]") for h in (*LOOPBACK, *hosts)}
    wildcard = any(h in ("0.0.0.0", "::", "") for h in allowed)
    rules = _value_rules(app)
    csp = _csp(app)

    @server.before_request
    def _check_request():
        req = flask.request
        if not host_allowed(req.host, allowed, wildcard):
            return _plain("misdirected request: this server answers only to " + ", ".join(sorted(allowed)), 421)
        if req.method == "POST" and req.path.endswith(UPDATE):
            why = check_callback_body(req.get_data(cache=True), app.callback_map, rules)
            if why:
                return _plain(f"malformed callback request: {why}", 400)
        return None

    @server.after_request
    def _headers(resp: flask.Response) -> flask.Response:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Content-Security-Policy"] = csp
        resp.headers["Referrer-Policy"] = "no-referrer"
        return resp

    # Werkzeug's server (`rnnviz serve`, `app.run`) writes "Server: Werkzeug/x Python/y" itself, before
    # the app's headers: name the server without versions instead (process-wide; gunicorn has its own).
    WSGIRequestHandler.server_version, WSGIRequestHandler.sys_version = "rnnviz", ""

    server.register_error_handler(DependencyException, lambda e: _plain("no such file", 404))

    @server.errorhandler(Exception)
    def _unexpected(e: Exception):
        # Reached only by what escapes a callback's own handler (Dash's argument handling, a response
        # that cannot be serialised): answered as the request's fault, logged in one line.
        if isinstance(e, HTTPException):
            return e
        log.warning("request %s failed: %s", flask.request.path, _one_line(e))
        return _plain(f"request could not be handled: {_one_line(e)}", 400)


def report_error(err: Exception) -> None:
    """Dash's ``on_error``: show what went wrong in the page's status line, log one line, change nothing."""
    msg = str(err) if isinstance(err, RnnvizError) else f"that did not work ({_one_line(err)})"
    if not isinstance(err, RnnvizError):
        trigger = dash.ctx.triggered_id if dash.ctx else None
        log.warning("callback for %s failed: %s", trigger, _one_line(err))
    dash.set_props("status", {"children": msg[:500]})


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def _plain(text: str, status: int) -> flask.Response:
    return flask.Response(text + "\n", status=status, mimetype="text/plain")


def host_allowed(host: str, allowed: set[str], wildcard: bool) -> bool:
    """Is the Host header ``host`` (``name``, ``name:port``, ``[v6]:port``) one of ``allowed``?"""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else ""
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    if name in allowed:
        return True
    if wildcard:  # DNS rebinding needs a DNS name: an address typed as such is safe to answer
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return False
    return False


def _csp(app: dash.Dash) -> str:
    # Dash writes one inline script (the renderer's start-up); allow exactly it by hash. Plotly and Dash
    # set inline styles, so style-src needs 'unsafe-inline' (styles cannot run code).
    scripts = " ".join(app.csp_hashes())  # already quoted: 'sha256-...'
    return ("default-src 'self'; "
            f"script-src 'self' {scripts}; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


# --- callback bodies ---


def _json_ok(x, depth: int = 0) -> str | None:
    """Why ``x`` (parsed JSON) is not one a page sends: too deep, a non-finite number, a huge string."""
    if depth > MAX_DEPTH:
        return f"nested more than {MAX_DEPTH} deep"
    if isinstance(x, float) and not math.isfinite(x):
        return "a number that is not finite"
    if isinstance(x, str) and len(x) > MAX_STRING:
        return f"a string of more than {MAX_STRING:,} characters"
    items = x.values() if isinstance(x, dict) else x if isinstance(x, list) else ()
    for v in items:
        why = _json_ok(v, depth + 1)
        if why:
            return why
    return None


def _bounded_depth(raw: bytes) -> bool:
    """A cheap pre-check before parsing: at most MAX_DEPTH + 8 brackets open at once (strings ignored
    only roughly: a bracket inside a string counts, which can only refuse, never let through, too much)."""
    depth = 0
    for b in raw.translate(None, delete=bytes(c for c in range(256) if c not in b"[]{}")):
        depth += 1 if b in b"[{" else -1
        if depth > MAX_DEPTH + 8:
            return False
    return True


def check_callback_body(raw: bytes, callback_map: dict, rules: dict) -> str | None:
    """None if ``raw`` is a callback request this app's page could send, else the reason in a few words."""
    body = _parse(raw)
    if isinstance(body, str):
        return body
    cb = callback_map.get(body.get("output")) if isinstance(body.get("output"), str) else None
    if cb is None or cb.get("callback") is None:  # none, or one that runs in the browser (clientside)
        return "names no callback of this app"
    why = _json_ok(body)
    if why:
        return why
    if not _outputs_match(body.get("outputs"), body["output"]):
        return "outputs missing or not those of the callback"
    why = _check_arguments(cb, body, rules)
    if why:
        return why
    changed = body.get("changedPropIds", [])
    if not (isinstance(changed, list) and all(isinstance(c, str) for c in changed)):
        return "changedPropIds must be a list of strings"
    return None


def _parse(raw: bytes) -> dict | str:
    """The request body as a JSON object, or why it is not one."""
    if not _bounded_depth(raw):
        return f"nested more than {MAX_DEPTH} deep"
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # ValueError: not JSON, bad UTF-8, an integer of 5,000 digits
        return "not JSON"
    return body if isinstance(body, dict) else "not a JSON object"


def _check_arguments(cb: dict, body: dict, rules: dict) -> str | None:
    """The inputs and state are those the callback declares, each with a value its rules accept."""
    for key in ("inputs", "state"):
        declared = cb.get(key, [])
        given = body.get(key, [])
        if not isinstance(given, list) or len(given) != len(declared):
            return f"{key}: expected {len(declared)} item(s)"
        for dep, item in zip(declared, given, strict=True):
            why = _check_dependency(dep, item, rules)
            if why:
                return f"{key}: {why}"
    return None


def _outputs_match(outputs, key: str) -> bool:
    """``outputs`` are those of the callback whose callback-map key (Dash's output string) is ``key``."""
    declared = [o.rsplit(".", 1) for o in _split_outputs(key)]
    given = outputs if isinstance(outputs, list) else [outputs]
    if key.startswith("..") != isinstance(outputs, list) or len(given) != len(declared):
        return False
    for (oid, prop), item in zip(declared, given, strict=True):
        # allow_duplicate outputs are declared, and sent by the renderer, as "children@<hash>"
        if not (isinstance(item, dict) and item.get("property") in (prop, prop.split("@")[0])):
            return False
        if oid.startswith("{"):  # a pattern-matching output: a list or dict id of that type
            continue
        if item.get("id") != oid:
            return False
    return True


def _split_outputs(output: str) -> list[str]:
    return output[2:-2].split("...") if output.startswith("..") else [output]


def _check_dependency(dep: dict, item, rules: dict) -> str | None:
    did, prop = dep["id"], dep["property"]
    if did.startswith("{"):  # pattern-matching (ALL): a list of {id: {type, index}, property, value}
        ptype = json.loads(did).get("type")
        if not isinstance(item, list):
            return f"{ptype}.{prop} must be a list"
        for it in item:
            if not (isinstance(it, dict) and isinstance(it.get("id"), dict) and it["id"].get("type") == ptype
                    and it.get("property") == prop):
                return f"an item of {ptype}.{prop} is not one"
            if not _is_count(it.get("value")) and prop.startswith("n_"):
                return f"{ptype}.{prop} must be a click count"
        return None
    if not (isinstance(item, dict) and item.get("id") == did and item.get("property") == prop):
        return f"expected {did}.{prop}"
    check = rules.get((did, prop))
    if check is not None and "value" in item and not check(item["value"]):
        return f"{did}.{prop} is not a value that control sends"
    return None


def _is_count(v) -> bool:
    return v is None or (type(v) is int and 0 <= v < 2**53)


def _is_number(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _is_text(v) -> bool:
    return v is None or isinstance(v, str)


def _value_rules(app: dash.Dash) -> dict:
    """(component id, property) -> a check of the values that control can send, from the layout."""
    outputs = {o.split("@")[0] for key in app.callback_map for o in _split_outputs(key)}
    rules: dict = {}
    for c in _walk(app.layout):
        cid = getattr(c, "id", None)
        if not isinstance(cid, str):
            continue
        if isinstance(c, html.Button):
            rules[(cid, "n_clicks")] = _is_count
        elif isinstance(c, dcc.Input):
            rules[(cid, "value")] = _is_number if getattr(c, "type", "text") == "number" else _is_text
            rules[(cid, "n_submit")] = rules[(cid, "n_blur")] = _is_count
        elif isinstance(c, dcc.Textarea):
            rules[(cid, "value")] = _is_text
            rules[(cid, "n_blur")] = rules[(cid, "n_clicks")] = _is_count
        elif isinstance(c, (dcc.Dropdown, dcc.Checklist)):  # a checklist: the boxes ticked, a list
            multi = isinstance(c, dcc.Checklist) or getattr(c, "multi", False)
            rules[(cid, "value")] = _dropdown_rule(c, cid, outputs, multi)
        elif isinstance(c, dcc.Location):
            for prop in ("search", "pathname", "hash", "href"):
                rules[(cid, prop)] = _is_text
        elif isinstance(c, dcc.Tabs):
            rules[(cid, "value")] = _is_text
    return rules


def _dropdown_rule(c, cid: str, outputs: set, multi: bool):
    """A dropdown's (or a checklist's) values: one of its options when they are fixed at start-up (else any
    scalar), a list of them for a multi-select (``multi``) or a checklist, or nothing."""
    options = getattr(c, "options", None)
    if options and f"{cid}.options" not in outputs:  # fixed at start-up: one of them or nothing
        values = {json.dumps(o["value"] if isinstance(o, dict) else o) for o in options}
        one = lambda v: json.dumps(v) in values  # noqa: E731
    else:
        one = lambda v: isinstance(v, (str, int, float)) and not isinstance(v, bool)  # noqa: E731
    if multi:  # a list of them (or nothing)
        return lambda v: v is None or isinstance(v, list) and all(map(one, v))
    return lambda v: v is None or one(v)


def _walk(component):
    yield component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if hasattr(child, "to_plotly_json"):
            yield from _walk(child)
