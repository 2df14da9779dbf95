"""`python -m services.bookings`: run the bookings service (same as `parkmate run bookings`)."""

from services.cli import main

main(["run", "bookings"], prog_name="parkmate")
