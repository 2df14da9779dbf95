"""`python -m services.api`: run the api service (same as `parkmate run api`)."""

from services.cli import main

main(["run", "api"], prog_name="parkmate")
