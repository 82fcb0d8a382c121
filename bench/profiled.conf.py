"""The app's gunicorn settings, with each worker sampled by a profiler (`run.py --profile`).

After every millisecond of CPU the worker uses (SIGPROF), it counts the stack it is in: that
of whichever greenlet runs, or the hub's. Idle time takes no samples. From its start to the
quick stop (SIGINT, which the bench sends), then it writes `<BENCH_PROFILE_DIR>/profile-<pid>.txt`:
the functions that took the most samples, by their own time and with what they called.
(pyinstrument and cProfile follow one thread's calls and returns, which greenlets switching in
and out of break.)
"""

import os

from chatapp.gunicorn_conf import *  # noqa: F403
from chatapp.gunicorn_conf import post_worker_init as app_post_worker_init
from chatapp.gunicorn_conf import worker_int as app_worker_int

INTERVAL = 0.001
_samples = {"own": {}, "total": {}, "count": 0}


def post_worker_init(worker):  # noqa: ANN001 - gunicorn's hook signature
    import signal

    from gevent.monkey import get_original

    app_post_worker_init(worker)
    own, total = _samples["own"], _samples["total"]

    def sample(_signum, frame):  # noqa: ANN001
        _samples["count"] += 1
        place = _place(frame)
        own[place] = own.get(place, 0) + 1
        seen = set()
        while frame is not None:
            place = _place(frame)
            if place not in seen:
                seen.add(place)
                total[place] = total.get(place, 0) + 1
            frame = frame.f_back

    get_original("signal", "signal")(signal.SIGPROF, sample)
    signal.setitimer(signal.ITIMER_PROF, INTERVAL, INTERVAL)


def _place(frame):  # noqa: ANN001, ANN202
    code = frame.f_code
    path = code.co_filename
    for marker in ("/site-packages/", "/chatapp/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{code.co_name} ({path}:{code.co_firstlineno})"


def worker_int(worker):  # noqa: ANN001 - gunicorn's hook signature
    import signal

    signal.setitimer(signal.ITIMER_PROF, 0, 0)
    count = max(_samples["count"], 1)
    lines = [f"{_samples['count']} samples, one every {INTERVAL * 1000:g} ms of CPU", ""]
    for title, table in (("own time", _samples["own"]), ("with callees", _samples["total"])):
        lines.append(f"-- by {title} (% of samples)")
        for place, hits in sorted(table.items(), key=lambda item: -item[1])[:300]:
            lines.append(f"{hits * 100 / count:6.2f}  {place}")
        lines.append("")
    path = os.path.join(os.environ["BENCH_PROFILE_DIR"], f"profile-{os.getpid()}.txt")
    with open(path, "w") as handle:
        handle.write("\n".join(lines))
    app_worker_int(worker)
