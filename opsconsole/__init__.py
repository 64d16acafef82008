"""opsconsole: a platform-ops console for a multi-cloud Kubernetes fleet.

The ops core (``opsconsole.core``) reads the fleet, judges it against its targets and changes it only
through Ansible playbooks; the faces (CLI, Textual console, Slack bot) call the core and render.
"""

__version__ = "0.1.0"
