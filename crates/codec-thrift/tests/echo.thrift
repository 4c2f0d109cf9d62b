// Test service shared by the capture script and the peer tests (loaded by thriftpy2).
exception NotFound {
    1: string what
}

struct Inner {
    1: i32 x
}

struct Item {
    1: i64 id,
    2: string name,
    3: list<string> tags,
    4: map<string, i32> attrs,
    5: list<Inner> inners,
    6: bool flag,
    7: double score,
    8: set<i16> small,
    9: binary blob,
    10: optional Inner inner,
}

service Echo {
    string echo(1: string msg, 2: Item item),
    void ping(),
    oneway void fire(1: string what),
    Item get(1: i64 id) throws (1: NotFound nf),
    string boom(),
}
