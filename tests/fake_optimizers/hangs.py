"""Never finishes on its own: the job must kill it at its timeout."""

import time

print("started", flush=True)
time.sleep(600)
