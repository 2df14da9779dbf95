"""`python -m services.api`: run the api (same as `parkmate run api`)."""

from services.api.entrypoints import main
from services.runtime.loop import run

run(main())
