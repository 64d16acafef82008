"""What the project's Cloud SQL modules share: the sqladmin client, its errors, and waiting for operations.

Why it exists: ``opsconsole_cloudsql_replicas`` (read replica count) and ``opsconsole_cloudsql_role``
(promote, demote) both reach the Cloud SQL Admin API through the official client (static discovery: no
discovery document fetched at run time), either Google's with default credentials or the sandbox's local
emulator anonymously, and both wait for the long-running operations the API answers with.
"""

from __future__ import annotations

import time

try:
    import httplib2
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import GoogleAuthError
    from googleapiclient import discovery
    from googleapiclient.errors import Error as ApiClientError
    from googleapiclient.errors import HttpError

    HAS_SQLADMIN = True
    #: What a call to the API may raise (a refusal, no credentials, the connection): fail_json, not a trace.
    API_ERRORS = (ApiClientError, GoogleAuthError, httplib2.HttpLib2Error, OSError)
except ImportError:  # reported by each module
    HAS_SQLADMIN = False
    API_ERRORS = (OSError,)

    class HttpError(Exception):  # type: ignore[no-redef]  # never raised: the module stops first
        status_code = 0

#: Seconds between two polls of an operation.
POLL_S = 2


def sqladmin(endpoint_url):
    """The sqladmin v1 client: Google with default credentials, or ``endpoint_url`` anonymously."""
    if endpoint_url:
        return discovery.build(
            "sqladmin",
            "v1",
            static_discovery=True,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint_url.rstrip("/") + "/"},
        )
    return discovery.build("sqladmin", "v1", static_discovery=True)


def describe(exc):
    """One line for an API error: the HTTP status and reason when there is one."""
    if isinstance(exc, HttpError):
        return f"HTTP {exc.status_code}: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


def wait(module, sql, project, op):
    """Poll the operation ``op`` until it is done (within the module's ``timeout``); fail_json with its
    errors if it failed."""
    deadline = time.monotonic() + module.params["timeout"]
    while op.get("status") != "DONE":
        if time.monotonic() > deadline:
            module.fail_json(msg=f"operation {op.get('name')} is not done after {module.params['timeout']} s")
        time.sleep(POLL_S)
        op = sql.operations().get(project=project, operation=op["name"]).execute()
    errors = (op.get("error") or {}).get("errors") or []
    if errors:
        module.fail_json(
            msg=f"operation {op.get('operationType')} on {op.get('targetId')} failed: "
            + "; ".join(str(e.get("message", e)) for e in errors)
        )
