from services.notifier.storage import metadata
from services.runtime.migrate import run_env

run_env(metadata)
