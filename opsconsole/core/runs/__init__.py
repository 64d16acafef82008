"""Playbook runs: the run engine (the only ansible-runner user), its job store and its events."""
