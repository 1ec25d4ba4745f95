#!/usr/bin/env python3
"""Explains each "peer dead" verdict of a kernel-benchmark run from the daemons' hello traces.

Run the benchmark with
  --daemon-log-level 'info,failoverd::hellos=trace,failoverd_link=trace' --keep DIR
then: bench/hello_trace.py DIR/<lab> [verdicts]   (the lab folder holds a/ and b/)

For the first verdicts (default 4) it prints the peer's hellos sent in the 80 ms before: when
its control thread queued each into TLS and when the judge's tap heard it (the log's wall
clock is one clock for both daemons on one host), and the pauses both hello threads logged.
"""
import datetime
import re
import sys


def parse(path):
    events = []
    for line in open(path, errors="replace"):
        m = re.match(r"(\d{4}-\S+)Z\s+(\w+)\s+(\S+): (.*)$", line)
        if m:
            t = datetime.datetime.fromisoformat(m.group(1)).timestamp()
            events.append((t, m.group(3), m.group(4)))
    return events


def stamp(message):
    m = re.search(r"stamp=(\d+)", message)
    return int(m.group(1)) if m else None


def clock(t):
    return datetime.datetime.fromtimestamp(t).strftime("%H:%M:%S.%f")[:-3]


def main():
    lab = sys.argv[1]
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    log = {n: parse(f"{lab}/{n}/failoverd.log") for n in "ab"}
    sent = {n: [(t, stamp(m)) for t, _, m in log[n] if m.startswith("hello sent")] for n in "ab"}
    heard = {n: {stamp(m): t for t, _, m in log[n] if m.startswith("hello heard")} for n in "ab"}
    queued = {n: [t for t, _, m in log[n] if m.startswith("control frames queued")] for n in "ab"}
    full = {n: [t for t, _, m in log[n] if m.startswith("control socket full")] for n in "ab"}
    verdicts = sorted(
        (t, n, m) for n in "ab" for t, target, m in log[n]
        if target == "failoverd::hellos" and m.startswith("peer dead")
    )
    for t, judge, message in verdicts[:limit]:
        peer = "b" if judge == "a" else "a"
        print(f"== {judge} judged at {clock(t)}: {message}")
        for at, s in sent[peer]:
            if not t - 0.08 <= at <= t + 0.03:
                continue
            into = next((q for q in queued[peer] if at <= q <= at + 0.2), None)
            line = f"   {peer} sent {clock(at)}"
            line += f", queued into TLS {(into - at) * 1e3:.1f} ms later" if into else ", not queued within 200 ms"
            got = heard[judge].get(s)
            line += f", heard by {judge} {(got - at) * 1e3:.1f} ms after sending ({clock(got)})" if got else ", never heard"
            print(line)
        print(f"   {peer}'s control socket full {sum(t - 0.1 <= f <= t for f in full[peer])} times in the 100 ms before")
        for n in (judge, peer):
            for at, _, m in log[n]:
                if t - 0.08 <= at <= t + 0.03 and "paused" in m:
                    print(f"   {n}: {clock(at)} {m.split(';')[0]}")


if __name__ == "__main__":
    main()
