// Test IDL shared by the Thrift peers (thriftpy2 and Apache Thrift) of the end-to-end tests.
namespace py hello

exception BadInput {
    1: string message
}

// Nested data to exercise full value skipping (unframed transports must find the message end).
struct Item {
    1: i64 id,
    2: double score,
    3: list<string> tags,
    4: map<string, i32> counts,
    5: bool flag,
    6: binary blob,
    7: set<i16> small,
    8: byte b,
    9: optional list<Item> children,
}

service HelloService {
    // "hello <name> from <server name>"
    string sayHello(1: string name),
    // returns msg; msg == "bad" -> BadInput, msg == "appex" -> TApplicationException from the server
    string echo(1: string msg) throws (1: BadInput e),
    // records msg; read it back with lastNotify()
    oneway void notify(1: string msg),
    // sleeps ms milliseconds then returns "slept <ms> on <server name>"
    string slow(1: i32 ms),
    // the last message received by notify ("" if none)
    string lastNotify(),
    // the THeader info headers received with THIS request (empty for non-THeader servers)
    map<string, string> requestHeaders(),
    // returns items followed by every list of groups (in key order)
    list<Item> roundTrip(1: list<Item> items, 2: map<string, list<Item>> groups),
}
