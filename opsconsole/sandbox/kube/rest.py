"""The REST verbs of the Kubernetes API emulator: route a request to discovery or to a verb on the store.

Why this module exists: between the HTTP layer (:mod:`opsconsole.sandbox.kube.server`) and the stored
objects (:mod:`opsconsole.sandbox.kube.store`) sits what an API server does with a request: resolve the
path (``/api/v1/...``, ``/apis/<group>/<version>/...``, namespaced or not, subresource or not) to a
resource of :data:`~opsconsole.sandbox.kube.resources.RESOURCES`, and list (selectors, pagination), get,
create, replace (PUT) or patch it, with server-side dry run (``dryRun=All``: answer the object as it
would be, keep nothing). The rules themselves are in :mod:`opsconsole.sandbox.kube.semantics`.

``watch=1`` / ``watch=true`` on a list URL answers an event stream (an iterator of chunks, see
:mod:`opsconsole.sandbox.kube.watch`) instead of an object. Every write commits its change as a watch
event before it releases the store's lock. Continue tokens resume after the last key of the previous page
on the current state (real servers serve the snapshot of the first page; objects here only change at
publish time, between reads). Each request is counted in :attr:`Store.calls
<opsconsole.sandbox.kube.store.Store.calls>` by verb and resource.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from opsconsole.sandbox.kube import logs, semantics
from opsconsole.sandbox.kube.naming import now_iso, uid
from opsconsole.sandbox.kube.resources import (
    BY_PATH,
    GROUPS,
    JsonObj,
    Resource,
    api_group,
    api_group_list,
    api_versions,
    qualified,
    resource_list,
    version_info,
)
from opsconsole.sandbox.kube.status import ApiError, bad_request, invalid, not_allowed, not_found, not_served
from opsconsole.sandbox.kube.store import Cluster, Store
from opsconsole.sandbox.kube.watch import open_watch

__all__ = ["RestApi"]


class RestApi:
    """The verbs on one :class:`~opsconsole.sandbox.kube.store.Store`.

    Args:
        store: the emulator's state.
        port: the port the server listens on (``/api`` reports it), None before it binds.
    """

    def __init__(self, store: Store, port: Callable[[], int | None]) -> None:
        self._store = store
        self._port = port

    def dispatch(
        self,
        method: str,
        *,
        cl: Cluster,
        seg: list[str],
        query: dict[str, str],
        content_type: str,
        body: bytes,
    ) -> tuple[int, JsonObj | bytes | Iterator[bytes]]:
        """Answer one request on cluster ``cl``; ``seg`` is the path after ``/clusters/<cluster>``.

        Returns the status code and the JSON answer (a stream of chunks for a watch; text for a pod's
        log, chunks of text when it follows it); raises :class:`ApiError` for any other answer.
        """
        if method == "GET":
            doc = self._discovery(cl, seg)
            if doc is not None:
                return 200, doc
        res, namespace, name, sub = self._resolve(seg)
        dry_run = query.get("dryRun")
        if dry_run not in (None, "", "All"):
            raise bad_request(f'dryRun: Unsupported value: {dry_run!r}: supported: "All"')
        if method == "GET" and name is None and query.get("watch") in ("1", "true"):
            self._store.count(f"watch:{res.plural}")
            store = self._store
            return 200, open_watch(
                store.watches,
                cluster=cl.spec.name,
                res=res,
                namespace=namespace,
                query=query,
                current_rv=lambda: store.rv,
                objects=lambda: cl.store(res.plural),
            )
        verb = {"GET": "list" if name is None else "get", "PUT": "update"}.get(method, method.lower())
        self._store.count(f"{verb}:{res.plural}" + (f"/{sub}" if sub else ""))
        if sub == "log" and name is not None:
            if method != "GET":
                raise not_allowed(method, res)
            return 200, self._log(cl, namespace, name, query)
        with self._store.lock:
            try:
                if name is None:
                    return self._collection(
                        method, cl, res, namespace, query, content_type, body, bool(dry_run)
                    )
                if method == "GET":
                    obj = self._get(cl, res, namespace, name)
                    return 200, semantics.scale_of(obj) if sub == "scale" else obj
                if method in ("PUT", "PATCH"):
                    new = self._replace(
                        method, cl, res, namespace, name, sub, content_type, body, bool(dry_run)
                    )
                    return 200, new
                raise not_allowed(method, res)
            finally:
                if method != "GET":
                    self._store.commit()

    # -- routing --------------------------------------------------------------------------------

    def _discovery(self, cl: Cluster, seg: list[str]) -> JsonObj | None:
        if seg == ["version"]:
            return version_info(cl.spec.kind)
        if seg == ["api"]:
            return api_versions(self._port())
        if seg == ["apis"]:
            return api_group_list()
        if seg == ["api", "v1"]:
            return resource_list("v1")
        if len(seg) == 2 and seg[0] == "apis" and seg[1] in GROUPS:
            return api_group(seg[1])
        if len(seg) == 3 and seg[0] == "apis" and GROUPS.get(seg[1]) == seg[2]:
            return resource_list(f"{seg[1]}/{seg[2]}")
        return None

    @staticmethod
    def _resolve(seg: list[str]) -> tuple[Resource, str, str | None, str | None]:
        """(resource, namespace or "", name or None, subresource or None) of a resource path; 404 if none."""
        if seg[:2] == ["api", "v1"]:
            gv, rest = "v1", seg[2:]
        elif len(seg) >= 3 and seg[0] == "apis" and GROUPS.get(seg[1]) == seg[2]:
            gv, rest = f"{seg[1]}/{seg[2]}", seg[3:]
        else:
            raise not_served()
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces" and (gv, rest[2]) in BY_PATH:
            namespace, rest = rest[1], rest[2:]
        if not rest or (gv, rest[0]) not in BY_PATH or len(rest) > 3:
            raise not_served()
        res = BY_PATH[(gv, rest[0])]
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) == 3 else None
        if sub is not None and sub not in res.subresources:
            raise not_served(f"{qualified(res)} has no subresource {sub!r}")
        if res.namespaced and name is not None and not namespace:
            raise not_served()
        return res, namespace, name, sub

    def _collection(
        self,
        method: str,
        cl: Cluster,
        res: Resource,
        namespace: str,
        query: Mapping[str, str],
        content_type: str,
        body: bytes,
        dry_run: bool,
    ) -> tuple[int, JsonObj]:
        if method == "GET":
            return 200, self._list(cl, res, namespace, query)
        if method == "POST":
            if not res.writable:
                raise not_allowed(method, res)
            obj = semantics.decode_body(body, content_type)
            return 201, self._create(cl, res, namespace, obj, dry_run=dry_run)
        raise not_allowed(method, res)

    def _replace(
        self,
        method: str,
        cl: Cluster,
        res: Resource,
        namespace: str,
        name: str,
        sub: str | None,
        content_type: str,
        body: bytes,
        dry_run: bool,
    ) -> JsonObj:
        """PUT or PATCH one object (or its subresource)."""
        if not res.writable:
            raise not_allowed(method, res)
        current = self._get(cl, res, namespace, name)
        if dry_run:  # server-side dry run (kubernetes.core's check mode): answer, keep nothing
            current = copy.deepcopy(current)
        if method == "PUT":
            new = semantics.decode_body(body, content_type)
            if not isinstance(new, dict):
                raise bad_request("the body of a PUT must be an object")
        else:
            base = semantics.scale_of(current) if sub == "scale" else current
            new = semantics.apply_patch(base, body, content_type)
        return self._write(res, current, new, sub)

    # -- verbs ----------------------------------------------------------------------------------

    def _log(
        self, cl: Cluster, namespace: str, name: str, query: Mapping[str, str]
    ) -> bytes | Iterator[bytes]:
        """``pods/{name}/log`` (see :mod:`opsconsole.sandbox.kube.logs`): text, or a follow stream."""
        flag = {"1", "true", "True"}
        container = query.get("container") or None
        previous = query.get("previous") in flag
        timestamps = query.get("timestamps") in flag
        now = datetime.now(UTC)
        with self._store.lock:
            pod = self._get(cl, BY_PATH[("v1", "pods")], namespace, name)
            entries = logs.select(
                logs.log_entries(pod, container=container, previous=previous, now=now), query, now
            )
        if query.get("follow") not in flag:
            return logs.render(entries, timestamps=timestamps)
        pods = cl.store("pods")
        return logs.follow_log(
            self._store.watches,
            self._store.lock,
            lambda: pods.get((namespace, name)),
            entries,
            container=container,
            previous=previous,
            timestamps=timestamps,
        )

    def _get(self, cl: Cluster, res: Resource, namespace: str, name: str) -> JsonObj:
        obj = cl.store(res.plural).get((namespace, name))
        if obj is None:
            raise not_found(res, name)
        return obj

    def _list(self, cl: Cluster, res: Resource, namespace: str, query: Mapping[str, str]) -> JsonObj:
        items: Iterable[JsonObj] = (o for _, o in sorted(cl.store(res.plural).items()))
        if namespace:
            items = (o for o in items if o["metadata"].get("namespace") == namespace)
        if query.get("labelSelector"):
            match = semantics.label_matcher(query["labelSelector"])
            items = (o for o in items if match(o["metadata"].get("labels") or {}))
        if query.get("fieldSelector"):
            fmatch = semantics.field_matcher(query["fieldSelector"])
            items = (o for o in items if fmatch(o))
        start = semantics.decode_token(query["continue"]) if query.get("continue") else None
        selected = [o for o in items if start is None or semantics.object_key(o) > start]
        rv = self._store.rv
        metadata: JsonObj = {"resourceVersion": str(rv)}
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise bad_request(f"limit must be an integer, got {query['limit']!r}") from None
        if limit > 0 and len(selected) > limit:
            metadata["continue"] = semantics.encode_token(rv, semantics.object_key(selected[limit - 1]))
            metadata["remainingItemCount"] = len(selected) - limit
            selected = selected[:limit]
        return {
            "kind": f"{res.kind}List",
            "apiVersion": res.group_version,
            "metadata": metadata,
            "items": selected,
        }

    def _create(
        self, cl: Cluster, res: Resource, namespace: str, obj: Any, *, dry_run: bool = False
    ) -> JsonObj:
        if not isinstance(obj, dict):
            raise bad_request("the body of a create must be an object")
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not semantics.valid_name(name):
            raise invalid(res, str(name), "metadata.name: Required value: a DNS-1123 name is required")
        assert isinstance(name, str)
        if res.namespaced:
            if meta.get("namespace") not in (None, namespace):
                raise bad_request("the namespace of the object does not match the URL")
            if ("", namespace) not in cl.store("namespaces"):
                raise not_served(f'namespaces "{namespace}" not found')
        store = cl.store(res.plural)
        key = (namespace if res.namespaced else "", name)
        if key in store:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{qualified(res)} "{name}" already exists',
                details={"name": name, "group": res.group, "kind": res.plural},
            )
        new = self._stamp(cl, res, obj, key)
        semantics.validate(res, new)
        if not dry_run:
            store[key] = new
        return new

    def _stamp(self, cl: Cluster, res: Resource, obj: JsonObj, key: tuple[str, str]) -> JsonObj:
        """A new object as stored: kind, apiVersion and the server-owned metadata set."""
        new = copy.deepcopy(obj)
        new["apiVersion"] = res.group_version
        new["kind"] = res.kind
        meta = new.setdefault("metadata", {})
        meta["name"] = key[1]
        if res.namespaced:
            meta["namespace"] = key[0]
        meta["uid"] = uid(cl.spec.name, res.plural, key[0], key[1], str(self._store.rv))
        meta["resourceVersion"] = self._store.next_rv()
        meta["generation"] = 1
        meta["creationTimestamp"] = now_iso()
        if res.plural == "namespaces":
            new["spec"] = {"finalizers": ["kubernetes"]}
            new["status"] = {"phase": "Active"}
        return new

    def _write(self, res: Resource, current: JsonObj, new: JsonObj, sub: str | None) -> JsonObj:
        """Apply a PUT or a patched object to ``current`` (in place), keeping server-owned fields."""
        cur_meta = current["metadata"]
        if sub == "scale":
            replicas = semantics.scale_replicas(res, current, new)
            if current["spec"].get("replicas") != replicas:
                current["spec"]["replicas"] = replicas
                cur_meta["generation"] = int(cur_meta.get("generation", 1)) + 1
                cur_meta["resourceVersion"] = self._store.next_rv()
            return semantics.scale_of(current)
        candidate = semantics.put_candidate(res, current, new, sub)
        if candidate == current:
            return current
        if candidate.get("spec") != current.get("spec") or candidate.get("data") != current.get("data"):
            candidate["metadata"]["generation"] = int(cur_meta.get("generation", 1)) + 1
        candidate["metadata"]["resourceVersion"] = self._store.next_rv()
        current.clear()
        current.update(candidate)
        return current
