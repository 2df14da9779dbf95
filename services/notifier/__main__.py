"""`python -m services.notifier`: run the notifier (same as `parkmate run notifier`)."""

from services.notifier.entrypoints import main
from services.runtime.loop import run

run(main())
