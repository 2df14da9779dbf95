"""`python -m services.bookings`: run the bookings service (same as `parkmate run bookings`)."""

import asyncio

from services.bookings.entrypoints import main

asyncio.run(main())
