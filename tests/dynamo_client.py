"""The official `openai` client against Dynamo's frontend with two Higgs workers (run by
scripts/dynamo-test.sh, which starts the processes). Checks, in order:

1. the model is listed once both workers registered;
2. speech requests (wav and pcm streamed, mp3 whole) are byte-identical to `higgs serve`'s
   answers to the same requests, and both workers served some;
3. killing the worker that is streaming a long request fails that request cleanly (the client
   sees an error, no hang), and the next requests are all served by the survivor;
4. a restarted worker rejoins and serves requests again (through the SDK's 503 retries while
   the dead worker's discovery entry lives, with no retries once it has expired);
5. a worker stopped with SIGTERM deregisters first: no request fails.

Exits non-zero on the first failed check.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time

import openai

ap = argparse.ArgumentParser()
ap.add_argument("--frontend", required=True)
ap.add_argument("--serve", required=True)
ap.add_argument("--work", required=True)
ap.add_argument("--worker", action="append", required=True, help="NAME=PID")
ap.add_argument("--worker-cmd", required=True)
a = ap.parse_args()

workers = dict(w.split("=", 1) for w in a.worker)
workers = {k: int(v) for k, v in workers.items()}
front = openai.OpenAI(base_url=a.frontend, api_key="unused", max_retries=0, timeout=120)
serve = openai.OpenAI(base_url=a.serve, api_key="unused", max_retries=0, timeout=120)
MODEL = "higgs-test"


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def log(name):
    with open(os.path.join(a.work, f"{name}.log"), errors="replace") as f:
        return ANSI.sub("", f.read())


def served(name):
    return len(re.findall(r"status=ok", log(name)))


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}")
        for n in ["frontend", *workers]:
            print(f"--- {n}.log (tail)\n" + "\n".join(log(n).splitlines()[-15:]))
        sys.exit(1)
    print(f"ok: {what}")


def wait_for(cond, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if cond():
                return
        except Exception:
            pass
        time.sleep(0.5)
    check(False, what)


# 1. Registered.
def listed(client):
    return any(m.id == MODEL for m in client.models.list().data)


wait_for(lambda: listed(serve), 120, "higgs serve is up")
wait_for(lambda: all("serving" in log(n) for n in workers), 180, "both workers registered")
wait_for(lambda: listed(front), 60, "the frontend lists the model")


def speech(client, fmt, seed, text, stream, tokens=24):
    extra = {"seed": seed, "max_new_tokens": tokens}
    if client is serve and stream:
        extra["stream_format"] = "audio"
    if stream:
        with client.audio.speech.with_streaming_response.create(
            model=MODEL, voice="alloy", input=text, response_format=fmt, extra_body=extra
        ) as r:
            return b"".join(r.iter_bytes())
    return client.audio.speech.create(
        model=MODEL, voice="alloy", input=text, response_format=fmt, extra_body=extra
    ).read()


def unavailable():
    return log("frontend").count("response sent status=503")


def answered(client, seed0, n=6):
    """How many of n requests got an answer (an empty one is an answer: the random fixture
    model may stop at once); a failure is an exception."""
    ok = 0
    for i in range(n):
        try:
            speech(client, "pcm", seed0 + i, texts[i % 3], False)
            ok += 1
        except Exception as e:  # noqa: BLE001
            print(f"   request {seed0 + i} failed: {type(e).__name__}: {e}")
    return ok


# 2. Same bytes as higgs serve, spread over both workers.
texts = ["The quick brown fox.", "Rain streams across the valley.", "A red kite."]
before = {n: served(n) for n in workers}
n_req = 0
for i in range(8):
    fmt, stream = [("pcm", True), ("wav", True), ("mp3", False), ("pcm", False)][i % 4]
    want = speech(serve, fmt, 40 + i, texts[i % 3], stream)
    got = speech(front, fmt, 40 + i, texts[i % 3], stream)
    n_req += 1
    check(len(got) > 0 and got == want, f"request {i} ({fmt}, stream={stream}): {len(got)} bytes, same as higgs serve")
time.sleep(0.5)
per = {n: served(n) - before[n] for n in workers}
check(sum(per.values()) == n_req and all(v > 0 for v in per.values()), f"both workers served: {per}")

# 3. Kill the worker that streams a long request.
long_text = " ".join(["Every morning the baker opens the shop and the street fills with bread."] * 6)
victim = None
for attempt in range(5):
    started = {n: log(n).count(" started") for n in workers}
    t_kill = None
    err = None
    got = 0
    try:
        with front.audio.speech.with_streaming_response.create(
            model=MODEL, voice="alloy", input=long_text, response_format="pcm",
            extra_body={"seed": 900 + attempt, "max_new_tokens": 4000},
        ) as r:
            for chunk in r.iter_bytes():
                got += len(chunk)
                if victim is None:
                    busy = [n for n in workers if log(n).count(" started") > started[n]]
                    if busy:
                        victim = busy[0]
                        os.kill(workers[victim], signal.SIGKILL)
                        t_kill = time.time()
    # Whatever the client's transport raises for a body cut short (openai 1.x: httpx errors;
    # later releases wrap them): the check below only needs an error, not a hang.
    except Exception as e:  # noqa: BLE001
        err = e
    if victim is not None:
        break
check(victim is not None, "a long request was in flight on a worker when it was killed")
check(err is not None, f"the killed worker's stream failed cleanly ({type(err).__name__}: {err}) after {got} bytes")
check(time.time() - t_kill < 30, f"the failure came {time.time() - t_kill:.1f} s after the kill")
survivor = next(n for n in workers if n != victim)
base = served(survivor)
ok = answered(front, 70)
check(ok == 6, "the next 6 requests succeeded")
check(served(survivor) - base == 6, f"all 6 were served by the survivor ({survivor})")

# 4. The killed worker restarts and rejoins. A SIGKILLed worker cannot deregister: its
# discovery entry lives until its TTL runs out (10 s with file discovery; the lease TTL with
# etcd). The frontend stops routing to it after the first failed connection, but Dynamo
# 1.6.1's client resets the routable set to the discovered set whenever discovery changes, so
# the restarted worker's registration puts the dead entry back in rotation until it expires.
# A request routed there gets a 503 before any audio, which the openai SDK retries by default.
# Checked: (a) with the SDK's default retries every request succeeds and the restarted worker
# serves; (b) once the dead entry has expired, requests succeed without any retry and both
# workers serve; (5) a worker stopped with SIGTERM deregisters at once, so not one request
# fails.
inst_dir = os.path.join(a.work, "kv", "v1", "instances")


def instance_id(name):
    ids = re.findall(r"\(instance ([0-9a-f]+)\)", log(name))
    return ids[-1].lstrip("0") if ids else None


def registered(iid):
    return any(f.rsplit("%2F", 1)[-1].lstrip("0") == iid for f in os.listdir(inst_dir))


dead_id = instance_id(victim)
check(dead_id is not None, f"{victim}'s instance id is in its log ({dead_id})")
restart_log = os.path.join(a.work, f"{victim}.log")
proc = subprocess.Popen(
    a.worker_cmd.split(), stdout=subprocess.DEVNULL, stderr=open(restart_log, "w"),
    start_new_session=True,
)
retrying = front.with_options(max_retries=4)
try:
    wait_for(lambda: "serving" in log(victim), 180, f"{victim} restarted and registered")
    t_restart = time.time()
    n503 = unavailable()
    ok = answered(retrying, 80)
    stale = registered(dead_id)
    check(ok == 6, f"6 of 6 requests succeeded with the SDK's retries ({unavailable() - n503} "
          f"503s retried; dead entry still registered: {stale})")
    check(served(victim) > 0, f"the restarted {victim} served {served(victim)} of them")

    wait_for(lambda: not registered(dead_id), 30, f"the dead instance {dead_id} expired from discovery")
    print(f"ok: the dead instance {dead_id} expired {time.time() - t_kill:.1f} s after the kill")
    time.sleep(1.0)  # the frontend's discovery watch sees the removal
    n503 = unavailable()
    base = {n: served(n) for n in workers}
    ok = answered(front, 90)
    per = {n: served(n) - base[n] for n in workers}
    check(ok == 6 and unavailable() == n503, f"after expiry 6 of 6 succeeded with no retries, 0 503s")
    check(all(v > 0 for v in per.values()), f"both workers served: {per}")

    # 5. A planned stop: SIGTERM deregisters before the process exits.
    new_id = instance_id(victim)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        check(False, f"{victim} exited within 40 s of SIGTERM")
    check(not registered(new_id), f"{victim} exited on SIGTERM (rc {proc.returncode}) and its instance {new_id} is gone")
    n503 = unavailable()
    base = served(survivor)
    ok = answered(front, 100)
    check(ok == 6 and unavailable() == n503, "after the SIGTERM 6 of 6 succeeded with no retries, 0 503s")
    check(served(survivor) - base == 6, f"all 6 were served by {survivor}")
finally:
    proc.kill()
print("dynamo test: all checks passed")
