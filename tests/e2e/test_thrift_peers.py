"""The Thrift peers work client → server directly (no proxy): every variant the proxy tests rely on.

thriftpy2: binary/compact x framed/buffered; Apache Thrift: the same four plus THeader (binary and
compact subprotocol, info headers) and TMultiplexedProtocol; and the two implementations against each
other."""

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))

from thrift_testlib import (  # noqa: E402
    HEADER_VARIANTS,
    TP2_VARIANTS,
    BackendPool,
    app_exc_classes,
    client,
    variant_id,
)
from thrift_common import binary_message, connect, read_framed_binary_reply  # noqa: E402


@pytest.fixture(scope="module")
def pool():
    p = BackendPool()
    yield p
    p.close()


def exercise(c, server_name):
    """The common call sequence: plain call, declared exception, application exception, one-way."""
    assert c.sayHello("direct") == "hello direct from %s" % server_name
    assert c.echo("payload") == "payload"
    with pytest.raises(Exception) as ei:
        c.echo("bad")
    assert type(ei.value).__name__ == "BadInput"
    assert ei.value.message == "bad input on %s" % server_name
    with pytest.raises(app_exc_classes()) as ei:
        c.echo("appex")
    assert "app failure on %s" % server_name in str(ei.value)
    c.notify("note-%s" % server_name)
    assert c.lastNotify() == "note-%s" % server_name
    assert c.slow(5) == "slept 5 on %s" % server_name


@pytest.mark.parametrize("variant", TP2_VARIANTS, ids=variant_id)
def test_thriftpy2_direct(pool, variant):
    _, protocol, transport = variant
    port = pool.get("thriftpy2", protocol, transport, name="tp2")
    c = client(variant, port)
    try:
        exercise(c, "tp2")
        assert c.requestHeaders() == {}
    finally:
        c.close()


@pytest.mark.parametrize("variant", TP2_VARIANTS, ids=variant_id)
def test_apache_client_against_thriftpy2_server(pool, variant):
    _, protocol, transport = variant
    port = pool.get("thriftpy2", protocol, transport, name="tp2")
    c = client(("apache", protocol, transport), port)
    try:
        exercise(c, "tp2")
    finally:
        c.close()


@pytest.mark.parametrize("variant", TP2_VARIANTS, ids=variant_id)
def test_thriftpy2_client_against_apache_server(pool, variant):
    _, protocol, transport = variant
    port = pool.get("apache", protocol, transport, name="ap")
    c = client(variant, port)
    try:
        exercise(c, "ap")
    finally:
        c.close()


@pytest.mark.parametrize("variant", HEADER_VARIANTS, ids=variant_id)
def test_apache_theader_direct(pool, variant):
    _, protocol, transport = variant
    port = pool.get("apache", protocol, transport, name="hdr")
    c = client(variant, port, headers={"client-key": "client-value"})
    try:
        exercise(c, "hdr")
        assert c.requestHeaders() == {"client-key": "client-value"}
        c.headers = {}
        assert c.requestHeaders() == {}
    finally:
        c.close()


def test_apache_multiplexed_direct(pool):
    port = pool.get("apache", "binary", "framed", name="mux", multiplex="SvcA,SvcB")
    for svc in ("SvcA", "SvcB"):
        c = client(("apache", "binary", "framed"), port, service=svc)
        try:
            exercise(c, "mux")
        finally:
            c.close()


def test_raw_pipelined_seqids_direct(pool):
    """The raw wire helpers agree with a real server: two pipelined calls, seqids echoed."""
    port = pool.get("thriftpy2", "binary", "framed", name="tp2")
    s = connect(port)
    try:
        s.sendall(binary_message("sayHello", 1, 7, "a") + binary_message("sayHello", 1, 123456, "b"))
        replies = [read_framed_binary_reply(s) for _ in range(2)]
    finally:
        s.close()
    assert [(r[0], r[1], r[2], r[3].get(0)) for r in replies] == [
        ("sayHello", 2, 7, "hello a from tp2"),
        ("sayHello", 2, 123456, "hello b from tp2"),
    ]


def test_delay_option(pool):
    port = pool.get("thriftpy2", "binary", "framed", name="slowpoke", delay_ms=300)
    c = client(("thriftpy2", "binary", "framed"), port)
    try:
        start = time.monotonic()
        assert c.sayHello("x") == "hello x from slowpoke"
        assert time.monotonic() - start >= 0.25
    finally:
        c.close()


@pytest.mark.parametrize("variant", TP2_VARIANTS + HEADER_VARIANTS, ids=variant_id)
def test_nested_round_trip_direct(pool, variant):
    from thrift_testlib import backend_for, canon, sample_items

    port = backend_for(pool, variant, "tp2" if variant[0] == "thriftpy2" else "hdr")
    items, groups, expected = sample_items(variant[0])
    c = client(variant, port)
    try:
        assert canon(c.roundTrip(items, groups)) == expected
    finally:
        c.close()


def test_any_transport_server_direct(pool):
    port = pool.get("apache", "binary", "any", name="any")
    variants = TP2_VARIANTS + [("apache", p, t) for _, p, t in TP2_VARIANTS] + HEADER_VARIANTS
    for v in variants:
        c = client(v, port)
        try:
            assert c.sayHello(variant_id(v)) == "hello %s from any" % variant_id(v)
        finally:
            c.close()


def test_out_of_order_server_direct(pool):
    port = pool.get("ooo", "binary", "framed", name="ooo", delay_ms=20)
    s = connect(port)
    try:
        s.sendall(b"".join(binary_message("sayHello", 1, i, "a%d" % i) for i in range(20)))
        replies = [read_framed_binary_reply(s) for _ in range(20)]
    finally:
        s.close()
    assert sorted((r[2], r[3][0]) for r in replies) == [(i, "hello a%d from ooo" % i) for i in range(20)]
    c = client(("thriftpy2", "binary", "framed"), port)
    try:
        assert c.sayHello("tp2") == "hello tp2 from ooo"
    finally:
        c.close()


def test_non_strict_binary_direct(pool):
    port = pool.get("thriftpy2", "binary-nonstrict", "framed", name="old")
    c = client(("thriftpy2", "binary-nonstrict", "framed"), port)
    try:
        exercise(c, "old")
    finally:
        c.close()
