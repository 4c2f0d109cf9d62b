#!/usr/bin/env python3
"""Apache Thrift (Python) HelloService server: the second implementation and the THeader peer.

  thrift_apache_server.py --port P --name v1 --protocol binary|compact
                          --transport framed|buffered|header|any [--multiplex SvcA,SvcB] [--delay-ms N]

--transport header accepts only THeader clients; --transport any accepts every transport x protocol
(THeader, framed and unframed binary/compact) and answers each message in its own dialect (--protocol
is then the THeader default). With header/any, requestHeaders() returns the info headers received with
that very request. --multiplex registers the service under each name (TMultiplexedProcessor).
Prints "READY" once listening on 127.0.0.1:P.
"""

import argparse
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from thrift_common import Handler, apache_gen  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="v1")
    ap.add_argument("--protocol", choices=("binary", "compact"), default="binary")
    ap.add_argument("--transport", choices=("framed", "buffered", "header", "any"),
                    default="header")
    ap.add_argument("--multiplex", default="")
    ap.add_argument("--delay-ms", type=int, default=0)
    a = ap.parse_args()

    hello = apache_gen()
    from thrift.protocol import TBinaryProtocol, TCompactProtocol
    from thrift.protocol.THeaderProtocol import THeaderProtocol, THeaderProtocolFactory
    from thrift.server import TServer
    from thrift.Thrift import TApplicationException
    from thrift.TMultiplexedProcessor import TMultiplexedProcessor
    from thrift.transport import TSocket, TTransport
    from thrift.transport.THeaderTransport import THeaderClientType, THeaderSubprotocolID

    tls = threading.local()

    def headers_getter():
        got = getattr(tls, "headers", {}) or {}
        return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in got.items()}

    class RecordingHeaderProtocol(THeaderProtocol):
        """Remembers (per connection thread) the info headers of the message being read."""

        def _set_protocol(self):
            THeaderProtocol._set_protocol(self)
            if a.transport == "any":
                # Apache 0.22's C fast path fails on unframed compact behind THeaderTransport
                # ("PY_SSIZE_T_CLEAN macro must be defined"): use the pure-Python codec there.
                self._fast_decode = None
                self._fast_encode = None

        def readMessageBegin(self):
            out = THeaderProtocol.readMessageBegin(self)
            tls.headers = dict(self.get_headers())
            return out

    class RecordingHeaderProtocolFactory(THeaderProtocolFactory):
        def getProtocol(self, trans):
            return RecordingHeaderProtocol(trans, self.allowed_client_types, self.default_protocol)

    handler = Handler(a.name, a.delay_ms, hello.ttypes.BadInput, TApplicationException,
                      headers_getter if a.transport in ("header", "any") else None)
    if a.multiplex:
        processor = TMultiplexedProcessor()
        for svc in a.multiplex.split(","):
            processor.registerProcessor(svc, hello.HelloService.Processor(handler))
    else:
        processor = hello.HelloService.Processor(handler)

    if a.transport in ("header", "any"):
        sub = {"binary": THeaderSubprotocolID.BINARY, "compact": THeaderSubprotocolID.COMPACT}[a.protocol]
        allowed = (THeaderClientType.HEADERS,)
        if a.transport == "any":
            allowed += (THeaderClientType.FRAMED_BINARY, THeaderClientType.UNFRAMED_BINARY,
                        THeaderClientType.FRAMED_COMPACT, THeaderClientType.UNFRAMED_COMPACT)
        tfactory = TTransport.TTransportFactoryBase()
        pfactory = RecordingHeaderProtocolFactory(allowed, sub)
    else:
        tfactory = {"framed": TTransport.TFramedTransportFactory,
                    "buffered": TTransport.TBufferedTransportFactory}[a.transport]()
        pfactory = {"binary": TBinaryProtocol.TBinaryProtocolAcceleratedFactory,
                    "compact": TCompactProtocol.TCompactProtocolAcceleratedFactory}[a.protocol]()

    sock = TSocket.TServerSocket(host="127.0.0.1", port=a.port)
    server = TServer.TThreadedServer(processor, sock, tfactory, pfactory, daemon=True)
    sock.listen()
    sock.listen = lambda: None
    print("READY", flush=True)
    server.serve()


if __name__ == "__main__":
    main()
