"""What the project's Azure modules share: reaching ARM or the sandbox's local cloud, and failing clearly.

Why it exists: ``opsconsole_aks_agentpool``, ``opsconsole_azure_pg_replicas``, ``opsconsole_azure_pg_role``
and ``opsconsole_azure_metric_value`` each talk to Azure through the official SDK with an optional
``endpoint_url``. On the sandbox that is a loopback emulator spoken to over plain http with a static
token (not a secret: the local cloud accepts any bearer token); anywhere else it must be https with
``DefaultAzureCredential``. That rule, and the way an ARM error becomes one ``fail_json`` line instead of
a traceback, must be the same in every module: it lives here once.

Ansible ships this file with each module that imports it (``ansible.module_utils.opsconsole_azure``): it
is found in ``module_utils/`` next to the playbooks.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

try:
    from azure.core.exceptions import HttpResponseError
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    HAS_AZURE_CORE = True
except ImportError:  # each module reports its own missing package
    HAS_AZURE_CORE = False
    SansIOHTTPPolicy = object

SANDBOX_TOKEN = "opsconsole-sandbox"  # not a secret: the local cloud accepts any bearer token


def is_loopback(url):
    """``url`` names this machine (the sandbox's local cloud): plain http is allowed there only."""
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def require_https(module, url):
    """fail_json unless ``url`` is https: credentials must not travel in clear (loopback aside)."""
    if urlsplit(url).scheme != "https":
        module.fail_json(msg=f"endpoint_url {url} must be https (plain http only for a loopback "
                             "sandbox endpoint): credentials would travel in clear")


class SandboxBearer(SansIOHTTPPolicy):
    """Sets the static sandbox token: azure-core's token policy refuses plain http, the local cloud is http."""

    def on_request(self, request):
        request.http_request.headers["Authorization"] = f"Bearer {SANDBOX_TOKEN}"


class SandboxCredential:
    """A token credential that hands out the static sandbox token (for the local cloud only)."""

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken  # noqa: PLC0415

        return AccessToken(SANDBOX_TOKEN, int(time.time()) + 3600)


def make_client(module, cls, subscription, endpoint_url):
    """An ARM SDK client: the sandbox's local endpoint with the static token, or Azure with its defaults."""
    if endpoint_url:
        if is_loopback(endpoint_url):
            return cls(SandboxCredential(), subscription, base_url=endpoint_url.rstrip("/"),
                       authentication_policy=SandboxBearer(), polling_interval=0.2, retry_total=3)
        require_https(module, endpoint_url)
        from azure.identity import DefaultAzureCredential  # noqa: PLC0415

        scope = endpoint_url.rstrip("/") + "/.default"
        return cls(DefaultAzureCredential(), subscription, base_url=endpoint_url.rstrip("/"),
                   credential_scopes=[scope])
    from azure.identity import DefaultAzureCredential  # noqa: PLC0415

    return cls(DefaultAzureCredential(), subscription)


def fail_azure(module, exc, what):
    """fail_json with ARM's error code and message, not a traceback."""
    if HAS_AZURE_CORE and isinstance(exc, HttpResponseError):
        code = getattr(getattr(exc, "error", None), "code", None) or ""
        message = getattr(getattr(exc, "error", None), "message", None) or exc.message or str(exc)
        module.fail_json(msg=f"{what}: HTTP {exc.status_code} {code}: {message}".replace(" : ", ": "),
                         status_code=exc.status_code, error_code=code)
    module.fail_json(msg=f"{what}: {type(exc).__name__}: {exc}")
