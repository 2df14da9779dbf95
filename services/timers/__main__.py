"""`python -m services.timers`: run the timers service (same as `parkmate run timers`)."""

from services.cli import main

main(["run", "timers"], prog_name="parkmate")
