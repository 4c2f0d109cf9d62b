"""Thrift through meta-proxy with real third-party peers (thriftpy2 and Apache Thrift Python).

Variants: thriftpy2 binary/compact x framed/buffered, Apache THeader (binary and compact subprotocol).
Covers routed calls, routing by method / multiplexed service / THeader info header, weighted split,
one-way forwarding, declared and application exceptions, THeader request mutation, seqid restoration
with pipelining. Failure cases and load are in test_thrift_failures.py."""

import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))

from harness import route, static_cluster  # noqa: E402
from thrift_common import (  # noqa: E402
    binary_message,
    connect,
    parse_binary_message,
    read_framed_binary_reply,
    read_theader_reply,
    theader_frame,
)
from thrift_testlib import (  # noqa: E402
    HEADER_VARIANTS,
    LISTENER,
    TP2_VARIANTS,
    BackendPool,
    app_exc_classes,
    backend_for,
    canon,
    client,
    poll,
    sample_items,
    thrift_proxy,
    variant_id,
)

pytestmark = pytest.mark.proxy
ALL_VARIANTS = TP2_VARIANTS + HEADER_VARIANTS
LOCAL = "127.0.0.1"


@pytest.fixture(scope="module")
def pool(proxy_bin):
    p = BackendPool()
    yield p
    p.close()


def single_backend(pool, variant, name="v1", **route_kw):
    port = backend_for(pool, variant, name)
    return [route("all", cluster="c1", **route_kw)], [static_cluster("c1", [(LOCAL, port)])]


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=variant_id)
def test_routed_call(pool, variant):
    routes, clusters = single_backend(pool, variant)
    with thrift_proxy(routes, clusters) as (mp, port):
        c = client(variant, port)
        try:
            for i in range(3):
                assert c.sayHello("n%d" % i) == "hello n%d from v1" % i
            assert c.echo("payload") == "payload"
            assert c.slow(5) == "slept 5 on v1"
        finally:
            c.close()
        assert mp.metric("meta_protocol_downstream_requests_total", listener=LISTENER, protocol="thrift",
                         kind="request") >= 5
        assert mp.metric("meta_protocol_upstream_requests_total", listener=LISTENER, route="all",
                         cluster="c1") >= 5
        assert mp.metric("meta_protocol_responses_total", listener=LISTENER, cluster="c1", status="ok") >= 5


@pytest.mark.parametrize("variant", [("apache", p, t) for _, p, t in TP2_VARIANTS], ids=variant_id)
def test_cross_implementation_apache_client_thriftpy2_server(pool, variant):
    routes, clusters = single_backend(pool, ("thriftpy2",) + variant[1:])
    with thrift_proxy(routes, clusters) as (_, port):
        c = client(variant, port)
        try:
            assert c.sayHello("cross") == "hello cross from v1"
        finally:
            c.close()


def test_typed_struct_config(pool):
    variant = ("thriftpy2", "binary", "framed")
    routes, clusters = single_backend(pool, variant)
    with thrift_proxy(routes, clusters, typed_struct=True) as (_, port):
        c = client(variant, port)
        try:
            assert c.sayHello("ts") == "hello ts from v1"
        finally:
            c.close()


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=variant_id)
def test_exceptions_pass_through(pool, variant):
    routes, clusters = single_backend(pool, variant)
    with thrift_proxy(routes, clusters) as (mp, port):
        c = client(variant, port)
        try:
            with pytest.raises(Exception) as ei:
                c.echo("bad")
            assert type(ei.value).__name__ == "BadInput", repr(ei.value)
            assert ei.value.message == "bad input on v1"
            with pytest.raises(app_exc_classes()) as ei:
                c.echo("appex")
            assert "app failure on v1" in str(ei.value)
            assert ei.value.type == 6  # INTERNAL_ERROR, as raised by the server
            assert c.sayHello("after") == "hello after from v1"  # connection still fine
        finally:
            c.close()
        assert mp.metric("meta_protocol_responses_total", listener=LISTENER, cluster="c1", status="error") >= 2
        assert mp.metric("meta_protocol_local_replies_total", listener=LISTENER) == 0


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=variant_id)
def test_oneway_forwarded(pool, variant):
    routes, clusters = single_backend(pool, variant)
    msg = "oneway-%s-%d" % (variant_id(variant), os.getpid())
    with thrift_proxy(routes, clusters) as (mp, port):
        c = client(variant, port)
        try:
            c.notify(msg)
            # no reply may come back for a one-way call: the next call gets its own result
            assert c.sayHello("next") == "hello next from v1"
            assert poll(c.lastNotify, msg) == msg
        finally:
            c.close()
        assert mp.metric("meta_protocol_downstream_requests_total", listener=LISTENER, kind="oneway") >= 1


@pytest.mark.parametrize("variant", [TP2_VARIANTS[0], TP2_VARIANTS[3], HEADER_VARIANTS[1]], ids=variant_id)
def test_route_by_method(pool, variant):
    v1 = backend_for(pool, variant, "v1")
    v2 = backend_for(pool, variant, "v2")
    routes = [route("hello", {"method": "sayHello"}, cluster="c1"),
              route("echo", {"method": "echo"}, cluster="c2")]
    clusters = [static_cluster("c1", [(LOCAL, v1)]), static_cluster("c2", [(LOCAL, v2)])]
    with thrift_proxy(routes, clusters) as (mp, port):
        c = client(variant, port)
        try:
            for i in range(4):
                assert c.sayHello("m%d" % i) == "hello m%d from v1" % i
                with pytest.raises(Exception) as ei:
                    c.echo("bad")  # the declared exception names the server that raised it
                assert getattr(ei.value, "message", None) == "bad input on v2", repr(ei.value)
        finally:
            c.close()
        assert mp.metric("meta_protocol_upstream_requests_total", listener=LISTENER, route="hello",
                         cluster="c1") >= 4
        assert mp.metric("meta_protocol_upstream_requests_total", listener=LISTENER, route="echo",
                         cluster="c2") >= 4


def test_route_by_prefix_match(pool):
    variant = TP2_VARIANTS[0]
    v1 = backend_for(pool, variant, "v1")
    v2 = backend_for(pool, variant, "v2")
    routes = [route("say", {"method": {"prefix_match": "say"}}, cluster="c2"),
              route("rest", cluster="c1")]
    clusters = [static_cluster("c1", [(LOCAL, v1)]), static_cluster("c2", [(LOCAL, v2)])]
    with thrift_proxy(routes, clusters) as (_, port):
        c = client(variant, port)
        try:
            assert c.sayHello("p") == "hello p from v2"
            assert c.slow(1) == "slept 1 on v1"
        finally:
            c.close()


@pytest.mark.parametrize("protocol,transport", [("binary", "framed"), ("compact", "buffered"),
                                                ("compact", "header")])
def test_route_by_multiplexed_service(pool, protocol, transport):
    """Apache TMultiplexedProtocol names the message `Service:method`: route on `service`, and `method`
    must be the bare method name."""
    v1 = pool.get("apache", protocol, transport, name="v1", multiplex="SvcA,SvcB")
    v2 = pool.get("apache", protocol, transport, name="v2", multiplex="SvcA,SvcB")
    routes = [route("a-hello", {"service": "SvcA", "method": "sayHello"}, cluster="c1"),
              route("b", {"service": "SvcB"}, cluster="c2")]
    clusters = [static_cluster("c1", [(LOCAL, v1)]), static_cluster("c2", [(LOCAL, v2)])]
    with thrift_proxy(routes, clusters) as (mp, port):
        a = client(("apache", protocol, transport), port, service="SvcA")
        b = client(("apache", protocol, transport), port, service="SvcB")
        try:
            assert a.sayHello("x") == "hello x from v1"
            assert b.sayHello("y") == "hello y from v2"
            assert b.echo("z") == "z"
            with pytest.raises(app_exc_classes()):
                a.echo("no route for SvcA:echo")
            assert a.sayHello("again") == "hello again from v1"
        finally:
            a.close()
            b.close()
        assert mp.metric("meta_protocol_local_replies_total", listener=LISTENER, reason="no_route") == 1


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_route_by_theader_info_header(pool, protocol):
    variant = ("apache", protocol, "header")
    v1 = backend_for(pool, variant, "v1")
    v2 = backend_for(pool, variant, "v2")
    routes = [route("canary", {"env": "canary"}, cluster="c2"), route("rest", cluster="c1")]
    clusters = [static_cluster("c1", [(LOCAL, v1)]), static_cluster("c2", [(LOCAL, v2)])]
    with thrift_proxy(routes, clusters) as (_, port):
        canary = client(variant, port, headers={"env": "canary"})
        plain = client(variant, port, headers={"env": "prod"})
        try:
            for i in range(3):
                assert canary.sayHello("c%d" % i) == "hello c%d from v2" % i
                assert plain.sayHello("p%d" % i) == "hello p%d from v1" % i
        finally:
            canary.close()
            plain.close()


def test_weighted_split(pool):
    variant = TP2_VARIANTS[0]
    v1 = backend_for(pool, variant, "v1")
    v2 = backend_for(pool, variant, "v2")
    routes = [route("split", weighted=[("c1", 30), ("c2", 70)])]
    clusters = [static_cluster("c1", [(LOCAL, v1)]), static_cluster("c2", [(LOCAL, v2)])]
    n = 300
    with thrift_proxy(routes, clusters) as (_, port):
        c = client(variant, port)
        try:
            got = [c.sayHello("w") for _ in range(n)]
        finally:
            c.close()
    ones = got.count("hello w from v1")
    twos = got.count("hello w from v2")
    assert ones + twos == n, set(got)
    # binomial(300, 0.3): mean 90, sd ~7.9; accept +-4.5 sd
    assert 55 <= ones <= 125, (ones, twos)


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_theader_request_mutation(pool, protocol):
    variant = ("apache", protocol, "header")
    v1 = backend_for(pool, variant, "v1")
    mutation = [("x-mesh", "meta-proxy"), ("client-key", "overridden")]
    routes = [route("hdrs", {"method": "requestHeaders"}, cluster="c1", request_mutation=mutation),
              route("rest", cluster="c1")]
    clusters = [static_cluster("c1", [(LOCAL, v1)])]
    with thrift_proxy(routes, clusters) as (mp, port):
        with_hdrs = client(variant, port, headers={"client-key": "orig", "keep": "k"})
        bare = client(variant, port)
        try:
            assert with_hdrs.requestHeaders() == {"x-mesh": "meta-proxy", "client-key": "overridden",
                                                  "keep": "k"}
            # a message without any info header gets a header section added
            assert bare.requestHeaders() == {"x-mesh": "meta-proxy", "client-key": "overridden"}
            # the rewritten frames did not desynchronise anything; the unmutated route is untouched
            assert with_hdrs.sayHello("after") == "hello after from v1"
            assert bare.sayHello("after") == "hello after from v1"
            assert with_hdrs.requestHeaders()["x-mesh"] == "meta-proxy"
        finally:
            with_hdrs.close()
            bare.close()
        assert mp.metric("meta_protocol_mutation_failures_total", listener=LISTENER) == 0


def test_theader_headers_pass_through_unmutated(pool):
    variant = HEADER_VARIANTS[0]
    routes, clusters = single_backend(pool, variant)
    with thrift_proxy(routes, clusters) as (_, port):
        c = client(variant, port, headers={"a": "1", "trace-id": "abc"})
        try:
            assert c.requestHeaders() == {"a": "1", "trace-id": "abc"}
        finally:
            c.close()


def test_mutation_without_theader_is_counted_and_forwarded(pool):
    variant = TP2_VARIANTS[0]
    routes, clusters = single_backend(pool, variant, request_mutation=[("k", "v")])
    with thrift_proxy(routes, clusters) as (mp, port):
        c = client(variant, port)
        try:
            assert c.sayHello("unmutated") == "hello unmutated from v1"
        finally:
            c.close()
        assert mp.metric("meta_protocol_mutation_failures_total", listener=LISTENER, direction="request") >= 1


def test_pipelined_seqids_restored(pool):
    """Raw strict-binary framed calls pipelined in one write; each reply carries the caller's seqid."""
    variant = TP2_VARIANTS[0]
    routes, clusters = single_backend(pool, variant)
    seqids = [7, 123456, -5, 0x7FFFFFFF, 0, 1]
    with thrift_proxy(routes, clusters) as (_, port):
        s = connect(port)
        try:
            s.sendall(b"".join(binary_message("sayHello", 1, sid, "s%d" % i) for i, sid in enumerate(seqids)))
            replies = [read_framed_binary_reply(s) for _ in seqids]
        finally:
            s.close()
    got = sorted((r[2], r[3].get(0)) for r in replies)
    want = sorted((sid, "hello s%d from v1" % i) for i, sid in enumerate(seqids))
    assert got == want
    assert all(r[0] == "sayHello" and r[1] == 2 for r in replies)


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_theader_response_mutation(pool, protocol):
    """Route response_mutation becomes info headers of the reply, read by the Apache THeader client."""
    variant = ("apache", protocol, "header")
    routes, clusters = single_backend(pool, variant, response_mutation=[("x-served-by", "meta-proxy")])
    with thrift_proxy(routes, clusters) as (mp, port):
        c = client(variant, port)
        try:
            assert c.sayHello("r") == "hello r from v1"
            assert c.base_proto.get_headers().get(b"x-served-by") == b"meta-proxy"
        finally:
            c.close()
        assert mp.metric("meta_protocol_mutation_failures_total", listener=LISTENER) == 0


def test_cluster_with_two_endpoints(pool):
    variant = TP2_VARIANTS[0]
    v1 = backend_for(pool, variant, "v1")
    v2 = backend_for(pool, variant, "v2")
    routes = [route("all", cluster="c12")]
    clusters = [static_cluster("c12", [(LOCAL, v1), (LOCAL, v2)])]
    with thrift_proxy(routes, clusters) as (_, port):
        c = client(variant, port)
        try:
            got = {c.sayHello("lb") for _ in range(20)}
        finally:
            c.close()
    assert got == {"hello lb from v1", "hello lb from v2"}


def test_idle_downstream_connection_closed(pool):
    variant = TP2_VARIANTS[0]
    routes, clusters = single_backend(pool, variant)
    with thrift_proxy(routes, clusters, idle_timeout="0.5s") as (mp, port):
        s = connect(port)
        try:
            s.sendall(binary_message("sayHello", 1, 1, "idle"))
            assert read_framed_binary_reply(s)[3].get(0) == "hello idle from v1"
            s.settimeout(5.0)
            start = time.monotonic()
            try:
                data = s.recv(1)
            except OSError:
                data = b""
            assert data == b"" and time.monotonic() - start < 4.0
        finally:
            s.close()
        assert mp.metric("meta_protocol_idle_timeouts_total", listener=LISTENER) >= 1


NESTED_VARIANTS = ALL_VARIANTS + [("apache", p, t) for _, p, t in TP2_VARIANTS]


@pytest.mark.parametrize("variant", NESTED_VARIANTS, ids=variant_id)
def test_nested_args_round_trip(pool, variant):
    """Deeply nested structs/lists/maps/sets/binary in both directions (unframed transports need the
    codec to skip every value to find the message end)."""
    backend_variant = variant if variant[2] == "header" else ("thriftpy2",) + variant[1:]
    routes, clusters = single_backend(pool, backend_variant)
    items, groups, expected = sample_items(variant[0])
    with thrift_proxy(routes, clusters) as (_, port):
        c = client(variant, port)
        try:
            for _ in range(3):
                assert canon(c.roundTrip(items, groups)) == expected
            assert c.sayHello("after") == "hello after from v1"
        finally:
            c.close()


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=variant_id)
def test_large_payload(pool, variant):
    """A 3 MB argument and reply (under the 8 MiB default max_message_size), split over many reads."""
    routes, clusters = single_backend(pool, variant)
    big = "".join(chr(ord("a") + i % 26) for i in range(3 * 1024 * 1024))
    with thrift_proxy(routes, clusters) as (_, port):
        c = client(variant, port, timeout_ms=30000)
        try:
            assert c.echo(big) == big
            assert c.sayHello("small") == "hello small from v1"
        finally:
            c.close()


def test_every_variant_on_one_listener(pool):
    """One listener, one cluster (an Apache server accepting every transport x protocol): 10 clients of
    all ten client variants at once each get replies in their own dialect."""
    backend = pool.get("apache", "binary", "any", name="any")
    routes = [route("all", cluster="c1")]
    variants = TP2_VARIANTS + [("apache", p, t) for _, p, t in TP2_VARIANTS] + HEADER_VARIANTS
    errors = []

    def worker(v):
        try:
            c = client(v, port)
            try:
                for j in range(20):
                    arg = "%s-%d" % (variant_id(v), j)
                    got = c.sayHello(arg)
                    if got != "hello %s from any" % arg:
                        errors.append((v, got))
                        return
            finally:
                c.close()
        except Exception as e:
            errors.append((v, repr(e)))

    with thrift_proxy(routes, [static_cluster("c1", [(LOCAL, backend)])]) as (mp, port):
        threads = [threading.Thread(target=worker, args=(v,), daemon=True) for v in variants]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert not errors, errors
        # upstream connections are per protocol variant: at least one per distinct variant
        assert mp.metric("meta_protocol_upstream_connections_total", cluster="c1") >= 6


def test_theader_seqids_restored_raw(pool):
    """Raw THeader (binary) calls pipelined with distinct seqids: both the THeader seqid and the message
    seqid of each reply are the caller's, and the info headers from the request's route mutation are
    not leaked into replies."""
    variant = HEADER_VARIANTS[0]
    routes, clusters = single_backend(pool, variant)
    seqids = [3, 99999, -7, 0x7FFFFFFF]
    with thrift_proxy(routes, clusters) as (_, port):
        s = connect(port)
        try:
            s.sendall(b"".join(theader_frame(binary_message("sayHello", 1, sid, "h%d" % i, framed=False), sid,
                                             {"k": "v%d" % i}) for i, sid in enumerate(seqids)))
            replies = [read_theader_reply(s) for _ in seqids]
        finally:
            s.close()
    got = sorted((hseq, proto, parse_binary_message(payload)[2], parse_binary_message(payload)[3].get(0))
                 for hseq, proto, _, payload in replies)
    want = sorted((sid, 0, sid, "hello h%d from v1" % i) for i, sid in enumerate(seqids))
    assert got == want


def test_non_strict_binary_framed(pool):
    """Old-style (non-strict) binary messages inside a frame: routed by method like strict ones."""
    variant = ("thriftpy2", "binary-nonstrict", "framed")
    v1 = pool.get("thriftpy2", "binary-nonstrict", "framed", name="v1")
    routes = [route("hello", {"method": "sayHello"}, cluster="c1")]
    with thrift_proxy(routes, [static_cluster("c1", [(LOCAL, v1)])]) as (_, port):
        c = client(variant, port)
        try:
            assert c.sayHello("old") == "hello old from v1"
            assert c.sayHello("old2") == "hello old2 from v1"
            with pytest.raises(app_exc_classes()):
                c.echo("no route")  # local reply in the client's (non-strict) dialect
            assert c.sayHello("old3") == "hello old3 from v1"
        finally:
            c.close()
