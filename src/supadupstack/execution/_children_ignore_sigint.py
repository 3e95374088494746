"""Preloaded by the pools' fork server, before it saves the signal handlers its children get:
every worker is then born ignoring SIGINT.

Ctrl-C reaches the whole process group. A worker that set ``SIG_IGN`` only in its pool
initializer died of it while still starting (unpickling its job queue), and the run reported
"a worker process died" instead of "interrupted".
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
