"""The rules of the Kubernetes REST API, as pure functions on JSON objects.

Why this module exists: what a selector matches, how a merge or JSON patch applies, what a continue
token holds, which fields a PUT may change and when a write conflicts are rules of the API itself, not of
the emulator's storage or HTTP layer. Kept apart and side-effect free, each can be read (and tested) on
its own; :mod:`opsconsole.sandbox.kube.rest` applies them to the stored objects.

Covered: label selectors (``=``, ``==``, ``!=``, ``in``, ``notin``, exists, ``!``exists), field
selectors on any dotted path (``=``, ``==``, ``!=``), RFC 7386 merge patch (also used for strategic-merge
and apply patches: our objects have no keyed lists that matter), RFC 6902 JSON patch, opaque base64
continue tokens, request bodies in JSON or YAML, validation of deployments and HPAs, the ``scale``
subresource's view of a deployment, and the server-owned fields a PUT keeps.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from opsconsole.sandbox.kube.resources import JsonObj, Resource
from opsconsole.sandbox.kube.status import ApiError, bad_request, conflict, invalid

__all__ = [
    "apply_patch",
    "decode_body",
    "decode_token",
    "encode_token",
    "field_matcher",
    "json_patch",
    "label_matcher",
    "merge_patch",
    "object_key",
    "put_candidate",
    "scale_of",
    "scale_replicas",
    "valid_name",
    "validate",
]

_SERVER_OWNED = ("metadata", "status", "kind", "apiVersion")
_MERGE_TYPES = (
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/apply-patch+json",
)

# -- selectors --------------------------------------------------------------------------------------


def _split_selector(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if current:
        parts.append("".join(current).strip())
    return [p for p in parts if p]


_SET_RE = re.compile(r"^([A-Za-z0-9._/-]+)\s+(in|notin)\s+\(([^)]*)\)$")
_EQ_RE = re.compile(r"^([A-Za-z0-9._/-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)$")
_KEY_RE = re.compile(r"^(!?)([A-Za-z0-9._/-]+)$")


def label_matcher(text: str) -> Callable[[Mapping[str, str]], bool]:
    """A predicate on labels for a Kubernetes label selector; raises 400 on a bad one."""
    reqs: list[tuple[str, str, frozenset[str]]] = []  # (key, op, values)
    for req in _split_selector(text):
        if m := _SET_RE.match(req):
            reqs.append((m.group(1), m.group(2), frozenset(v.strip() for v in m.group(3).split(","))))
        elif m := _EQ_RE.match(req):
            reqs.append((m.group(1), "notin" if m.group(2) == "!=" else "in", frozenset([m.group(3)])))
        elif m := _KEY_RE.match(req):
            reqs.append((m.group(2), "!exists" if m.group(1) else "exists", frozenset()))
        else:
            raise bad_request(f"unable to parse requirement: {req!r}")

    def matches(labels: Mapping[str, str]) -> bool:
        for key, op, values in reqs:
            value = labels.get(key)
            ok = {
                "in": value in values,
                "notin": value not in values,
                "exists": key in labels,
                "!exists": key not in labels,
            }[op]
            if not ok:
                return False
        return True

    return matches


def _path_value(obj: JsonObj, dotted: str) -> str:
    value: Any = obj
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return ""
        value = value.get(part)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_matcher(text: str) -> Callable[[JsonObj], bool]:
    """A predicate on objects for a field selector (``path=value``, ``==``, ``!=`` on dotted paths)."""
    reqs: list[tuple[str, bool, str]] = []  # (path, equal, value)
    for req in _split_selector(text):
        m = re.match(r"^([A-Za-z0-9._]+)\s*(==|=|!=)\s*(.*)$", req)
        if not m:
            raise bad_request(f"invalid field selector: {req!r}")
        reqs.append((m.group(1), m.group(2) != "!=", m.group(3)))

    def matches(obj: JsonObj) -> bool:
        return all((_path_value(obj, path) == value) == equal for path, equal, value in reqs)

    return matches


# -- patches ----------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _step(node: Any, part: str) -> Any:
    return node[int(part)] if isinstance(node, list) else node[part]


def _parent(doc: Any, path: str) -> tuple[Any, str]:
    parts = _pointer(path)
    if not parts:
        raise ValueError("cannot address the document root here")
    node = doc
    for p in parts[:-1]:
        node = _step(node, p)
    return node, parts[-1]


def _get(doc: Any, path: str) -> Any:
    node = doc
    for p in _pointer(path):
        node = _step(node, p)
    return node


def _add(doc: Any, path: str, value: Any) -> None:
    node, last = _parent(doc, path)
    if isinstance(node, list):
        node.insert(len(node) if last == "-" else int(last), value)
    else:
        node[last] = value


def _remove(doc: Any, path: str) -> Any:
    node, last = _parent(doc, path)
    return node.pop(int(last)) if isinstance(node, list) else node.pop(last)


def _replace(doc: Any, path: str, op: JsonObj) -> None:
    node, last = _parent(doc, path)
    if isinstance(node, list):
        node[int(last)] = copy.deepcopy(op["value"])
    else:
        if last not in node:
            raise KeyError(last)
        node[last] = copy.deepcopy(op["value"])


def _apply_op(doc: Any, kind: str, path: str, op: JsonObj) -> None:
    if kind == "add":
        _add(doc, path, copy.deepcopy(op["value"]))
    elif kind == "remove":
        _remove(doc, path)
    elif kind == "replace":
        _replace(doc, path, op)
    elif kind == "move":
        _add(doc, path, _remove(doc, op["from"]))
    elif kind == "copy":
        _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
    elif kind == "test":
        if _get(doc, path) != op["value"]:
            raise ValueError(f"test failed at {path}")
    else:
        raise ValueError(f"unknown JSON patch op {kind!r}")


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    if not isinstance(ops, list):
        raise ValueError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ValueError(f"invalid JSON patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        try:
            _apply_op(doc, kind, path, op)
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"JSON patch {kind} at {path}: no such location ({exc})") from None
    return doc


# -- bodies -----------------------------------------------------------------------------------------


def decode_body(body: bytes, content_type: str) -> Any:
    """A request body, JSON or YAML by its content type; 400 if it does not parse."""
    try:
        if "yaml" in content_type:
            return yaml.safe_load(body.decode())
        return json.loads(body or b"null")
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"the body of the request could not be decoded: {exc}") from None


def apply_patch(base: JsonObj, body: bytes, content_type: str) -> JsonObj:
    """``base`` with a PATCH body applied, by the patch type its content type names (415 if unknown)."""
    kind = content_type.split(";", maxsplit=1)[0].strip()
    doc = decode_body(body, content_type)
    try:
        if kind == "application/json-patch+json":
            patched = json_patch(base, doc)
        elif kind in _MERGE_TYPES:
            if not isinstance(doc, dict):
                raise ValueError("a merge patch must be an object")
            patched = merge_patch(base, doc)
        else:
            raise ApiError(
                415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {kind!r}"
            )
    except ValueError as exc:
        raise ApiError(422, "Invalid", f"the patch could not be applied: {exc}") from None
    if not isinstance(patched, dict):
        raise ApiError(422, "Invalid", "the patch did not produce an object")
    return patched


# -- continue tokens --------------------------------------------------------------------------------


def encode_token(rv: int, start: str) -> str:
    """A continue token: resume after the key ``start`` (see :func:`object_key`)."""
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    """The key a continue token resumes after; 400 if the token is not one of ours."""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        start = data["start"]
        if data.get("v") != "meta.k8s.io/v1" or not isinstance(start, str):
            raise ValueError("unknown token version")
        return start
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise bad_request(f"continue key is not valid: {token!r}") from None


def object_key(obj: JsonObj) -> str:
    """``namespace/name``: the order of lists, and what continue tokens point at."""
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


# -- objects ----------------------------------------------------------------------------------------


def valid_name(name: object) -> bool:
    """Whether ``name`` is a DNS-1123 subdomain, as object names must be."""
    return isinstance(name, str) and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) is not None


def _check_replicas(res: Resource, name: str, replicas: object) -> None:
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise invalid(res, name, f"spec.replicas: Invalid value: {replicas!r}: must be >= 0")


def validate(res: Resource, obj: JsonObj) -> None:
    """422 if a deployment or an HPA breaks the API's validation rules."""
    name = str(obj["metadata"].get("name"))
    spec = obj.get("spec")
    if res.plural == "deployments":
        if not isinstance(spec, dict):
            raise invalid(res, name, "spec: Required value")
        _check_replicas(res, name, spec.get("replicas", 1))
    elif res.plural == "horizontalpodautoscalers":
        if not isinstance(spec, dict):
            raise invalid(res, name, "spec: Required value")
        lo, hi = spec.get("minReplicas", 1), spec.get("maxReplicas")
        for label, value in (("minReplicas", lo), ("maxReplicas", hi)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise invalid(res, name, f"spec.{label}: Invalid value: {value!r}: must be >= 1")
        if lo > hi:
            raise invalid(
                res,
                name,
                f"spec.maxReplicas: Invalid value: {hi}: must be greater than or equal to minReplicas",
            )


def scale_of(dep: JsonObj) -> JsonObj:
    """The ``autoscaling/v1 Scale`` view of a deployment (its ``scale`` subresource)."""
    meta = dep["metadata"]
    labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": (dep.get("spec") or {}).get("replicas", 0)},
        "status": {
            "replicas": (dep.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        },
    }


def scale_replicas(res: Resource, current: JsonObj, new: JsonObj) -> int:
    """The replicas a write of the ``scale`` subresource asks for (422 if invalid, 409 if stale)."""
    cur_meta = current["metadata"]
    name = cur_meta["name"]
    spec: JsonObj = new["spec"] if isinstance(new.get("spec"), dict) else {}
    replicas = spec.get("replicas")
    _check_replicas(res, name, replicas)
    assert isinstance(replicas, int)
    rv = (new.get("metadata") or {}).get("resourceVersion")
    if rv and rv != cur_meta["resourceVersion"]:
        raise conflict(res, name)
    return replicas


def put_candidate(res: Resource, current: JsonObj, new: JsonObj, sub: str | None) -> JsonObj:
    """What ``current`` becomes when ``new`` is PUT (or a patch produced it): a validated copy.

    The server owns ``metadata`` (but labels and annotations), ``kind`` and ``apiVersion``; ``status``
    changes only through the ``status`` subresource, which changes nothing else. 400 if the name
    differs from the URL's, 409 if ``new`` carries a stale ``resourceVersion``.
    """
    cur_meta = current["metadata"]
    name = cur_meta["name"]
    new_meta: JsonObj = new["metadata"] if isinstance(new.get("metadata"), dict) else {}
    if new_meta.get("name", name) != name:
        raise bad_request("the name of the object does not match the URL")
    if new_meta.get("resourceVersion") and new_meta["resourceVersion"] != cur_meta["resourceVersion"]:
        raise conflict(res, name)
    candidate = copy.deepcopy(current)
    if sub == "status":
        candidate["status"] = copy.deepcopy(new.get("status") or {})
    else:
        for key, value in new.items():
            if key in _SERVER_OWNED:
                continue
            candidate[key] = copy.deepcopy(value)
        for key in list(candidate):
            if key not in new and key not in _SERVER_OWNED:
                del candidate[key]
        for key in ("labels", "annotations"):
            value = new_meta.get(key)
            if value:
                candidate["metadata"][key] = copy.deepcopy(value)
            else:
                candidate["metadata"].pop(key, None)
    validate(res, candidate)
    return candidate
