#!/usr/bin/env python3
"""What one wake-up over a Unix socket costs on this host: a timestamp sent at 200 Hz over a
socketpair to a sleeping process, 2000 samples; prints the one-way latency's percentiles.
Python's own overhead is included, so the figures are an upper bound of the kernel's share.
Used for "The VNC path" in RESULTS.md."""
import os
import socket
import struct
import time

N = 2000
a, b = socket.socketpair()
if os.fork() == 0:
    a.close()
    lat = []
    for _ in range(N):
        d = b.recv(8)
        lat.append(time.monotonic_ns() - struct.unpack("<q", d)[0])
    lat.sort()
    print("one hop, µs: p50 %.1f p90 %.1f p99 %.1f max %.1f" % tuple(
        v / 1e3 for v in (lat[N // 2], lat[N * 9 // 10], lat[N * 99 // 100], lat[-1])))
    os._exit(0)
b.close()
t0 = time.monotonic()
for i in range(N):
    t = t0 + i / 200
    now = time.monotonic()
    if t > now:
        time.sleep(t - now)
    a.send(struct.pack("<q", time.monotonic_ns()))
os.wait()
