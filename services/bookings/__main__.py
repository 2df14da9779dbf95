"""`python -m services.bookings`: run the bookings service (same as `parkmate run bookings`)."""

from services.bookings.entrypoints import main
from services.runtime.loop import run

run(main())
