"""A local Kubernetes API server for the sandbox: every cluster of the fleet behind one port.

Why this package exists: on the sandbox, opsconsole reads Kubernetes only through the official client
(:mod:`opsconsole.providers.k8s`) and changes it only through playbooks (``kubernetes.core``), so it needs
an API server that speaks the real wire protocol. None can be had on these machines (no kube-apiserver
binary; kind / k3s / kwok / envtest download binaries at run time) and kmock 0.8 falls short (namespaces,
PUT, selectors, uid / resourceVersion, list ``kind`` and a real ``scale`` subresource are missing or
broken, see ``docs/stack-notes.md``). :class:`KubeApiEmulator` is the small server the project needs
itself.

Use::

    emulator = KubeApiEmulator(fleet)
    endpoints = emulator.start()        # endpoints.settings["kubeconfig"]: one context per cluster
    emulator.publish(world)             # the world's state → the API's objects
    emulator.collect(world)             # what clients changed → the world
    emulator.stop()

What is served (per cluster, under ``/clusters/<cluster>``): discovery; namespaces, deployments (with the
``scale`` and ``status`` subresources) and HPAs v2 (list / get / create / PUT / PATCH); nodes, pods and
events (read only, pods with their ``log`` subresource); configmaps (read, create, update, patch). The
``bad_deploy`` incident's crash-looping pods, their logs and events: :mod:`.crashloop`, :mod:`.logs`.
One concept per module: start with :mod:`opsconsole.sandbox.kube.emulator`, whose docstring maps the
others.
"""

from __future__ import annotations

from opsconsole.sandbox.kube.emulator import KubeApiEmulator
from opsconsole.sandbox.kube.resources import AUTOSCALER_STATUS, CAPACITY_LABELS, NAMESPACE

__all__ = ["AUTOSCALER_STATUS", "CAPACITY_LABELS", "NAMESPACE", "KubeApiEmulator"]
