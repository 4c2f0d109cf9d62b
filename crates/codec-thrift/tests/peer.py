#!/usr/bin/env python3
"""Real Thrift peers for the codec-thrift tests.

thriftpy2 (binary/compact x framed/buffered) and Apache Thrift's THeaderProtocol (binary/compact
payload) clients and servers for the service in echo.thrift.

  peer.py capture OUTDIR              write golden streams (hex) and manifest.json into OUTDIR
  peer.py server VARIANT              serve on a free 127.0.0.1 port; prints "READY <port>"
  peer.py client VARIANT PORT CALL [KEY=VALUE ...]
                                      one call (echo|ping|fire|get|boom); KEY=VALUE are THeader
                                      info headers; prints one JSON line with the outcome

VARIANT: binary_framed binary_buffered compact_framed compact_buffered header_binary header_compact
The Apache echo server answers with the info headers it read (JSON) so tests can check them.
"""

import json
import os
import socket
import sys
import threading

import thriftpy2
from thriftpy2.protocol import (TBinaryProtocolFactory, TCompactProtocolFactory,
                                TMultiplexedProtocolFactory)
from thriftpy2.rpc import make_client, make_server
from thriftpy2.server import TThreadedServer
from thriftpy2.thrift import TApplicationException as PyAppException
from thriftpy2.thrift import TMultiplexedProcessor, TProcessor
from thriftpy2.transport import (TBufferedTransportFactory, TFramedTransportFactory,
                                 TServerSocket)

from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport import TSocket
from thrift.transport.THeaderTransport import THeaderClientType, THeaderSubprotocolID

HERE = os.path.dirname(os.path.abspath(__file__))
echo_thrift = thriftpy2.load(os.path.join(HERE, "echo.thrift"), module_name="echo_thrift")

VARIANTS = ["binary_framed", "binary_buffered", "compact_framed", "compact_buffered",
            "header_binary", "header_compact"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- thriftpy2


def py_factories(variant):
    proto, trans = variant.split("_")
    pf = TBinaryProtocolFactory() if proto == "binary" else TCompactProtocolFactory()
    tf = TFramedTransportFactory() if trans == "framed" else TBufferedTransportFactory()
    return pf, tf


class Handler:
    def echo(self, msg, item):
        return msg

    def ping(self):
        return None

    def fire(self, what):
        return None

    def get(self, id):
        raise echo_thrift.NotFound(what="item %d" % id)

    def boom(self):
        raise PyAppException(PyAppException.INTERNAL_ERROR, "boom")


def sample_item():
    return echo_thrift.Item(
        id=42, name="widget", tags=["a", "bb"], attrs={"k": 1, "l": -2},
        inners=[echo_thrift.Inner(x=1), echo_thrift.Inner(x=300)], flag=True, score=2.5,
        small={1, 2, 3}, blob=b"\x00\x01\xff", inner=echo_thrift.Inner(x=-7))


def py_server(variant, port, mux=False):
    pf, tf = py_factories(variant)
    if mux:
        proc = TMultiplexedProcessor()
        proc.register_processor("Calc", TProcessor(echo_thrift.Echo, Handler()))
        server = TThreadedServer(proc, TServerSocket(host="127.0.0.1", port=port),
                                 iprot_factory=pf, itrans_factory=tf, daemon=True)
    else:
        server = make_server(echo_thrift.Echo, Handler(), "127.0.0.1", port,
                             proto_factory=pf, trans_factory=tf)
    server.serve()


def py_call(client, call):
    if call == "echo":
        return client.echo("hello", sample_item())
    if call == "ping":
        return client.ping()
    if call == "fire":
        return client.fire("x")
    if call == "get":
        return client.get(7)
    if call == "boom":
        return client.boom()
    raise ValueError(call)


def py_client(variant, port, mux=False):
    pf, tf = py_factories(variant)
    if mux:
        pf = TMultiplexedProtocolFactory(pf, "Calc")
    return make_client(echo_thrift.Echo, "127.0.0.1", port, proto_factory=pf,
                       trans_factory=tf, timeout=5000)


# ---------------------------------------------------------------- Apache THeader


def header_protocol_id(variant):
    return THeaderSubprotocolID.BINARY if variant == "header_binary" else THeaderSubprotocolID.COMPACT


def read_value(p, ttype):
    """Generic reader: structs become {field id: value}."""
    if ttype == TType.STRUCT:
        p.readStructBegin()
        out = {}
        while True:
            _, ft, fid = p.readFieldBegin()
            if ft == TType.STOP:
                break
            out[fid] = read_value(p, ft)
            p.readFieldEnd()
        p.readStructEnd()
        return out
    if ttype == TType.STRING:
        return p.readBinary().decode("utf-8", "replace")
    if ttype == TType.I32:
        return p.readI32()
    if ttype == TType.I64:
        return p.readI64()
    if ttype == TType.BOOL:
        return p.readBool()
    p.skip(ttype)
    return None


def write_string_field(p, fid, value):
    p.writeFieldBegin("f", TType.STRING, fid)
    p.writeString(value)
    p.writeFieldEnd()


def write_echo_args(p):
    write_string_field(p, 1, "hello")
    p.writeFieldBegin("item", TType.STRUCT, 2)
    p.writeStructBegin("Item")
    p.writeFieldBegin("id", TType.I64, 1)
    p.writeI64(42)
    p.writeFieldEnd()
    p.writeFieldBegin("tags", TType.LIST, 3)
    p.writeListBegin(TType.STRING, 2)
    p.writeString("a")
    p.writeString("bb")
    p.writeListEnd()
    p.writeFieldEnd()
    p.writeFieldBegin("attrs", TType.MAP, 4)
    p.writeMapBegin(TType.STRING, TType.I32, 1)
    p.writeString("k")
    p.writeI32(1)
    p.writeMapEnd()
    p.writeFieldEnd()
    p.writeFieldBegin("flag", TType.BOOL, 6)
    p.writeBool(True)
    p.writeFieldEnd()
    p.writeFieldStop()
    p.writeStructEnd()
    p.writeFieldEnd()


APACHE_CALLS = {  # call -> (message type, args writer)
    "echo": (TMessageType.CALL, write_echo_args),
    "ping": (TMessageType.CALL, lambda p: None),
    "fire": (TMessageType.ONEWAY, lambda p: write_string_field(p, 1, "x")),
    "get": (TMessageType.CALL, lambda p: (p.writeFieldBegin("id", TType.I64, 1), p.writeI64(7),
                                          p.writeFieldEnd())),
    "boom": (TMessageType.CALL, lambda p: None),
}


def apache_client(variant, port):
    sock = TSocket.TSocket("127.0.0.1", port)
    sock.setTimeout(5000)
    sock.open()
    return THeaderProtocol(sock, [THeaderClientType.HEADERS], header_protocol_id(variant))


def apache_call(p, name, seqid, headers=()):
    """Returns (outcome dict, response headers)."""
    mtype, write_args = APACHE_CALLS[name.split(":")[-1]]
    for k, v in headers:
        p.set_header(k.encode(), v.encode())
    p.writeMessageBegin(name, mtype, seqid)
    p.writeStructBegin("args")
    write_args(p)
    p.writeFieldStop()
    p.writeStructEnd()
    p.writeMessageEnd()
    p.trans.flush()
    if mtype == TMessageType.ONEWAY:
        return {"ok": None}, {}
    _, rtype, rseqid = p.readMessageBegin()
    got_headers = {k.decode(): v.decode() for k, v in p.get_headers().items()}
    if rseqid != seqid:
        return {"seqid_mismatch": [seqid, rseqid]}, got_headers
    if rtype == TMessageType.EXCEPTION:
        x = TApplicationException()
        x.read(p)
        p.readMessageEnd()
        return {"app_error": {"type": x.type, "message": x.message}}, got_headers
    result = read_value(p, TType.STRUCT)
    p.readMessageEnd()
    if 1 in result:
        return {"declared": result[1].get(1)}, got_headers
    return {"ok": result.get(0)}, got_headers


def apache_serve_conn(sock, variant):
    p = THeaderProtocol(sock, [THeaderClientType.HEADERS], header_protocol_id(variant))
    try:
        while True:
            name, mtype, seqid = p.readMessageBegin()
            headers = {k.decode(): v.decode() for k, v in p.get_headers().items()}
            p.skip(TType.STRUCT)
            p.readMessageEnd()
            if mtype == TMessageType.ONEWAY:
                continue
            base = name.split(":")[-1]
            if base == "boom":
                p.writeMessageBegin(name, TMessageType.EXCEPTION, seqid)
                TApplicationException(TApplicationException.INTERNAL_ERROR, "boom").write(p)
            else:
                p.writeMessageBegin(name, TMessageType.REPLY, seqid)
                p.writeStructBegin("result")
                if base == "echo":
                    p.set_header(b"server", b"apache")
                    write_string_field(p, 0, json.dumps(headers, sort_keys=True))
                elif base == "get":
                    p.writeFieldBegin("nf", TType.STRUCT, 1)
                    p.writeStructBegin("NotFound")
                    write_string_field(p, 1, "item 7")
                    p.writeFieldStop()
                    p.writeStructEnd()
                    p.writeFieldEnd()
                p.writeFieldStop()
                p.writeStructEnd()
            p.writeMessageEnd()
            p.trans.flush()
    except Exception:  # connection closed
        pass
    finally:
        sock.close()


def apache_server(variant, port):
    server = TSocket.TServerSocket(host="127.0.0.1", port=port)
    server.listen()
    while True:
        client = server.accept()
        threading.Thread(target=apache_serve_conn, args=(client, variant), daemon=True).start()


# ---------------------------------------------------------------- modes


def start_server(variant, port, mux=False):
    if variant.startswith("header_"):
        target = apache_server
        args = (variant, port)
    else:
        target = py_server
        args = (variant, port, mux)
    threading.Thread(target=target, args=args, daemon=True).start()
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            threading.Event().wait(0.05)
    raise RuntimeError("server did not start")


def record(target_port, run_client):
    """Runs run_client(relay_port) through a recording relay; returns (c2s, s2c) bytes."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    rec = {"c2s": b"", "s2c": b""}

    def pump(a, b, key):
        while True:
            d = a.recv(65536)
            if not d:
                try:
                    b.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            rec[key] += d
            b.sendall(d)

    def relay():
        c, _ = lst.accept()
        s = socket.create_connection(("127.0.0.1", target_port))
        ts = [threading.Thread(target=pump, args=(c, s, "c2s")),
              threading.Thread(target=pump, args=(s, c, "s2c"))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    rt = threading.Thread(target=relay)
    rt.start()
    run_client(lst.getsockname()[1])
    rt.join(10)
    return rec["c2s"], rec["s2c"]


def msg(direction, method, kind, seqid, service=None, status="ok", headers=None):
    return {"dir": direction, "method": method, "service": service, "kind": kind,
            "status": status, "seqid": seqid, "headers": headers or {}}


def py_expected(service=None):
    out = []
    for name, kind, reply_status in [("echo", "request", "ok"), ("ping", "request", "ok"),
                                     ("fire", "oneway", None), ("get", "request", "error"),
                                     ("boom", "request", "error")]:
        out.append(msg("c2s", name, kind, 0, service))
        if reply_status:
            # thriftpy2 replies with the bare method name even to a multiplexed call
            out.append(msg("s2c", name, "response", 0, None, reply_status))
    return out


def capture(outdir):
    manifest = {}
    for variant in VARIANTS[:4]:
        for mux in (False, True):
            port = free_port()
            start_server(variant, port, mux)
            calls = ["echo", "ping", "fire", "get", "boom"]

            def run(relay_port, variant=variant, mux=mux, calls=calls):
                client = py_client(variant, relay_port, mux)
                for call in calls:
                    try:
                        py_call(client, call)
                    except (echo_thrift.NotFound, PyAppException):
                        pass
                client.close()

            c2s, s2c = record(port, run)
            name = variant + ("_mux" if mux else "")
            save(outdir, name, c2s, s2c)
            manifest[name] = py_expected("Calc" if mux else None)
    for variant in VARIANTS[4:]:
        port = free_port()
        start_server(variant, port)
        plan = [("echo", [("x-user", "alice"), ("x-request-id", "abc")]), ("ping", []),
                ("fire", [("only", "oneway")]), ("get", []), ("boom", []), ("Calc:ping", [])]
        expected = []
        for seqid, (name, headers) in enumerate(plan, start=1):
            service, _, method = name.rpartition(":")
            kind = "oneway" if method == "fire" else "request"
            expected.append(msg("c2s", method, kind, seqid, service or None, "ok", dict(headers)))
            if kind == "request":
                status = "error" if method in ("get", "boom") else "ok"
                resp_headers = {"server": "apache"} if method == "echo" else {}
                expected.append(msg("s2c", method, "response", seqid, service or None, status,
                                    resp_headers))

        def run(relay_port, variant=variant, plan=plan):
            p = apache_client(variant, relay_port)
            for seqid, (name, headers) in enumerate(plan, start=1):
                apache_call(p, name, seqid, headers)
            p.trans.close()

        c2s, s2c = record(port, run)
        save(outdir, variant, c2s, s2c)
        manifest[variant] = expected
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")


def save(outdir, name, c2s, s2c):
    for direction, data in (("c2s", c2s), ("s2c", s2c)):
        with open(os.path.join(outdir, "%s.%s.hex" % (name, direction)), "w") as f:
            f.write(data.hex() + "\n")


def client_mode(variant, port, call, headers):
    if variant.startswith("header_"):
        p = apache_client(variant, port)
        try:
            outcome, got = apache_call(p, call, 5, headers)
        except Exception as e:  # noqa: BLE001 - reported to the test
            outcome, got = {"transport_error": repr(e)}, {}
        outcome["headers"] = got
        return outcome
    client = py_client(variant, port)
    try:
        return {"ok": py_call(client, call)}
    except echo_thrift.NotFound as e:
        return {"declared": e.what}
    except PyAppException as e:
        return {"app_error": {"type": e.type, "message": e.message}}
    except Exception as e:  # noqa: BLE001
        return {"transport_error": repr(e)}


def main():
    mode = sys.argv[1]
    if mode == "capture":
        capture(sys.argv[2])
    elif mode == "server":
        port = free_port()
        start_server(sys.argv[2], port)
        print("READY %d" % port, flush=True)
        sys.stdin.read()  # serve until the test closes our stdin
    elif mode == "client":
        headers = [kv.split("=", 1) for kv in sys.argv[5:]]
        print(json.dumps(client_mode(sys.argv[2], int(sys.argv[3]), sys.argv[4], headers)),
              flush=True)
    else:
        sys.exit(__doc__)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
