"""`python -m services.timers`: run the timers service (same as `parkmate run timers`)."""

import asyncio

from services.timers.entrypoints import main

asyncio.run(main())
