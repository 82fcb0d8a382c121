"""The app's gunicorn settings, with pyinstrument sampling each worker (`run.py --profile`).

Each worker profiles from its first request to its quick stop (SIGINT, which the bench sends)
and writes `<BENCH_PROFILE_DIR>/profile-<pid>.txt` (the call tree, time per frame) and `.html`.
The samples are the greenlet that runs when taken, so the tree shows where the worker's time
goes, the hub's waiting included (`Hub.run`, `loop.run`: idle).
"""

import os

from chatapp.gunicorn_conf import *  # noqa: F403
from chatapp.gunicorn_conf import post_worker_init as app_post_worker_init
from chatapp.gunicorn_conf import worker_int as app_worker_int

_profilers = {}


def post_worker_init(worker):  # noqa: ANN001 - gunicorn's hook signature
    from pyinstrument import Profiler

    app_post_worker_init(worker)
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    _profilers[os.getpid()] = profiler


def worker_int(worker):  # noqa: ANN001 - gunicorn's hook signature
    profiler = _profilers.pop(os.getpid(), None)
    if profiler is not None:
        profiler.stop()
        out = os.path.join(os.environ["BENCH_PROFILE_DIR"], f"profile-{os.getpid()}")
        with open(out + ".txt", "w") as handle:
            handle.write(profiler.output_text(unicode=False, color=False, show_all=False))
        with open(out + ".html", "w") as handle:
            handle.write(profiler.output_html())
    app_worker_int(worker)
