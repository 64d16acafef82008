"""opsconsole: a platform-ops console for a multi-cloud Kubernetes fleet.

The ops core (``opsconsole.core``) reads the fleet, judges it against its targets and changes it only
through Ansible playbooks; the faces (CLI, Textual console, Slack bot) call the core and render.
"""

import os as _os

# gRPC's fork support restarts its poller thread in a forked child, which can crash there before the
# child execs (grpc/grpc#43055: "epoll_wait error: Bad file descriptor"). opsconsole reads Cloud
# Monitoring over gRPC and then forks ansible-playbook (ansible-runner) from the same process; the child
# only ever execs, never uses gRPC, so fork support is turned off before grpc is first imported (which
# always happens below this package). An explicit setting in the environment still wins.
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

__version__ = "0.1.0"
