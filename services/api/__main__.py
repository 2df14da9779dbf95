"""`python -m services.api`: run the api (same as `parkmate run api`)."""

import asyncio

from services.api.entrypoints import main

asyncio.run(main())
