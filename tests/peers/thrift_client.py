#!/usr/bin/env python3
"""Thrift HelloService command-line client (thriftpy2, or Apache Thrift for THeader/multiplexed).

  thrift_client.py --target 127.0.0.1:P --protocol binary|compact --transport framed|buffered|header
                   --method sayHello --arg x [--count N] [--impl thriftpy2|apache] [--service S]
                   [--header k=v ...] [--timeout-ms T]

Prints one JSON line per call: {"ok": true, "result": ..., "ms": ...} or
{"ok": false, "error": "...", "type": "<exception class>", "ms": ...}. One connection for all calls
(reconnects after a transport error).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from thrift_common import ApacheClient, tp2_client  # noqa: E402


def convert(method, arg):
    if method == "slow":
        return [int(arg)]
    if method in ("lastNotify", "requestHeaders"):
        return []
    return [arg]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--protocol", choices=("binary", "compact"), default="binary")
    ap.add_argument("--transport", choices=("framed", "buffered", "header"), default="framed")
    ap.add_argument("--impl", choices=("thriftpy2", "apache"), default=None)
    ap.add_argument("--service", default=None, help="multiplexed service name (Apache)")
    ap.add_argument("--header", action="append", default=[], help="THeader info header k=v (Apache)")
    ap.add_argument("--method", default="sayHello")
    ap.add_argument("--arg", default="world")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--timeout-ms", type=int, default=5000)
    a = ap.parse_args()
    host, port = a.target.rsplit(":", 1)
    impl = a.impl or ("apache" if a.transport == "header" or a.service or a.header else "thriftpy2")

    def connect():
        if impl == "apache":
            headers = dict(h.split("=", 1) for h in a.header)
            return ApacheClient(int(port), a.protocol, a.transport, a.service, a.timeout_ms, headers, host)
        return tp2_client(int(port), a.protocol, a.transport, a.timeout_ms, host)

    client = None
    for _ in range(a.count):
        start = time.monotonic()
        try:
            if client is None:
                client = connect()
            res = getattr(client, a.method)(*convert(a.method, a.arg))
            out = {"ok": True, "result": res}
        except Exception as e:  # report every failure as a JSON line
            out = {"ok": False, "error": str(e) or repr(e), "type": type(e).__name__}
            if type(e).__name__ not in ("BadInput", "TApplicationException") and client is not None:
                client.close()
                client = None
        out["ms"] = round((time.monotonic() - start) * 1000.0, 2)
        print(json.dumps(out), flush=True)
    if client is not None:
        client.close()


if __name__ == "__main__":
    main()
