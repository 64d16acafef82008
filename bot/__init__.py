"""The Slack face of opsconsole (slack-bolt); filled in by the Slack bot issue."""
