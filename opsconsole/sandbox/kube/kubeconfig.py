"""The kubeconfig the Kubernetes API emulator writes: one cluster and one context per fleet cluster.

Why this module exists: clients (the official client, ``kubernetes.core`` in playbooks, ``kubectl``)
find the sandbox's clusters the way they find real ones, through a kubeconfig. A cluster's server URL is
``http://127.0.0.1:PORT/clusters/<cluster>``: the official client joins its host and the resource path,
so a path prefix works exactly like Rancher's ``/k8s/clusters/<id>`` proxy does. Contexts are named like
the clusters; the token is a dummy (the sandbox checks none).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from opsconsole.sandbox.kube.resources import NAMESPACE

__all__ = ["DUMMY_TOKEN", "write_kubeconfig"]

#: The bearer token every context uses (fault matchers see it as the request's ``client``).
DUMMY_TOKEN = "sandbox-not-a-secret"


def write_kubeconfig(path: Path, clusters: Sequence[str], server_url: Callable[[str], str]) -> None:
    """Write the kubeconfig for ``clusters`` (the first sorted one is the current context)."""
    names = sorted(clusters)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": n, "cluster": {"server": server_url(n)}} for n in names],
        "users": [{"name": "sandbox", "user": {"token": DUMMY_TOKEN}}],
        "contexts": [
            {"name": n, "context": {"cluster": n, "user": "sandbox", "namespace": NAMESPACE}} for n in names
        ],
        "current-context": names[0] if names else "",
    }
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")  # JSON is YAML
