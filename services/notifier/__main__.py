"""`python -m services.notifier`: run the notifier (same as `parkmate run notifier`)."""

import asyncio

from services.notifier.entrypoints import main

asyncio.run(main())
