"""The ops core: domain model, inventory, fleet engine and policy.

Nothing here imports a face (Textual, Slack) or a cloud SDK; import-linter and a test enforce it.
"""
