"""`python -m services.notifier`: run the notifier service (same as `parkmate run notifier`)."""

from services.cli import main

main(["run", "notifier"], prog_name="parkmate")
