"""`python -m services.timers`: run the timers service (same as `parkmate run timers`)."""

from services.runtime.loop import run
from services.timers.entrypoints import main

run(main())
