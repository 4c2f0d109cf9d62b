#!/usr/bin/env python3
"""thriftpy2 HelloService server (real third-party Thrift peer).

  thrift_server.py --port P --name v1 --protocol binary|compact|binary-nonstrict
                   --transport framed|buffered [--delay-ms N] [--idle-close-ms N] [--log-calls]
                   [--fail-method M]

Prints "READY" once listening on 127.0.0.1:P; with --log-calls also "CALL <method> <args>" per call.
--fail-method M answers every call of M with a TApplicationException INTERNAL_ERROR naming the server.

One thread per connection; requests on one connection are served in order.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from thrift_common import Handler, tp2_factories, tp2_module  # noqa: E402


class CallLogger:
    """Wraps a Handler: prints one CALL line per invocation (before serving it)."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, method):
        fn = getattr(self.inner, method)

        def call(*args):
            print("CALL %s %s" % (method, " ".join(map(str, args))), flush=True)
            return fn(*args)

        return call


class Failing:
    """Wraps a Handler: `method` raises a TApplicationException INTERNAL_ERROR (sent as the reply)."""

    def __init__(self, inner, method, name, app_exc_cls):
        self.inner, self.method, self.name, self.app_exc_cls = inner, method, name, app_exc_cls

    def __getattr__(self, method):
        if method != self.method:
            return getattr(self.inner, method)

        def fail(*_args):
            raise self.app_exc_cls(self.app_exc_cls.INTERNAL_ERROR, "%s failed on purpose in %s" % (method, self.name))

        return fail


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="v1")
    ap.add_argument("--protocol", choices=("binary", "compact", "binary-nonstrict"), default="binary")
    ap.add_argument("--transport", choices=("framed", "buffered"), default="framed")
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--idle-close-ms", type=int, default=0,
                    help="close a connection idle for this long (0: never)")
    ap.add_argument("--log-calls", action="store_true", help='print "CALL <method> <args>" per call')
    ap.add_argument("--fail-method", default=None, help="answer this method with a TApplicationException")
    a = ap.parse_args()

    from thriftpy2.rpc import make_server
    from thriftpy2.thrift import TApplicationException

    mod = tp2_module()
    handler = Handler(a.name, a.delay_ms, mod.BadInput, TApplicationException)
    if a.fail_method:
        handler = Failing(handler, a.fail_method, a.name, TApplicationException)
    if a.log_calls:
        handler = CallLogger(handler)
    proto, trans = tp2_factories(a.protocol, a.transport)
    # client_timeout=0: never close idle connections (a proxy keeps its upstream connections open)
    server = make_server(mod.HelloService, handler, "127.0.0.1", a.port, proto_factory=proto,
                         trans_factory=trans, client_timeout=a.idle_close_ms)
    server.trans.listen()
    server.trans.listen = lambda: None
    print("READY", flush=True)
    server.serve()


if __name__ == "__main__":
    main()
