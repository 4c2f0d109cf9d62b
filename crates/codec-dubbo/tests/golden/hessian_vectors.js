// Hessian 2 vectors produced by hessian.js (the serializer dubbo-remoting uses). Writes
// hessian_vectors.txt: one vector per line, `name<TAB>hex<TAB>canonical JSON of hessian.js's own
// decoding` (strings over 2000 units and binaries over 1000 bytes summarised; numbers as JSON numbers, longs beyond 2^53 as strings, Buffer -> {"$bin": hex},
// Date -> {"$date": ms}). Run: node crates/codec-dubbo/tests/golden/hessian_vectors.js
'use strict';

const path = require('path');
const fs = require('fs');

const hessian = require(path.resolve(__dirname, '../../../../tests/peers/node_modules/hessian.js'));

function canon(v) {
  if (v === null || v === undefined) return null;
  // Long strings and binaries are summarised to keep this file small.
  if (typeof v === 'string' && v.length > 2000) {
    return { $strlen: v.length, $head: v.slice(0, 8), $tail: v.slice(-8) };
  }
  if (Buffer.isBuffer(v) && v.length > 1000) {
    return { $binlen: v.length, $head: v.slice(0, 4).toString('hex') };
  }
  if (Buffer.isBuffer(v)) return { $bin: v.toString('hex') };
  if (v instanceof Date) return { $date: v.getTime() };
  if (Array.isArray(v)) return v.map(canon);
  if (v instanceof Map) {
    const o = {};
    for (const [k, x] of v) o[String(k)] = canon(x);
    return o;
  }
  if (typeof v === 'object') {
    const o = {};
    for (const k of Object.keys(v)) o[k] = canon(v[k]);
    return o;
  }
  return v;
}

const long = n => ({ $class: 'long', $: n });
const int = n => ({ $class: 'int', $: n });
const point = (x, y) => ({ $class: 'org.example.Point', $: { x: int(x), y: int(y) } });
const nest = (depth, leaf) => {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = [ v ];
  return v;
};
const shared = { $class: 'org.example.Node', $: { name: 'shared' } };
const manyClasses = [];
for (let i = 0; i < 18; i++) manyClasses.push({ $class: 'org.example.C' + i, $: { f: int(i) } });
const emoji = '😀';

const vectors = {
  null: null,
  true: true,
  false: false,
  int_0: 0, int_m16: -16, int_47: 47, int_48: 48, int_m2048: -2048, int_2047: 2047, int_2048: 2048,
  int_m262144: -262144, int_262143: 262143, int_262144: 262144, int_max: 2147483647, int_min: -2147483648,
  long_0: long(0), long_m8: long(-8), long_15: long(15), long_16: long(16), long_m2048: long(-2048),
  long_262143: long(262143), long_int32: long(2147483647), long_2p40: long(Math.pow(2, 40)),
  long_big: long('4611686018427387904'), long_neg: long(-1234567890123),
  double_0: { $class: 'double', $: 0 }, double_1: { $class: 'double', $: 1 },
  double_m128: { $class: 'double', $: -128 }, double_32767: { $class: 'double', $: 32767 },
  double_12_25: 12.25, double_pi: 3.14159, double_big: { $class: 'double', $: 1e300 }, number_huge: 1e300, double_neg: -0.001,
  string_empty: '', string_a: 'a', string_31: 'x'.repeat(31), string_32: 'y'.repeat(32),
  string_1023: 'z'.repeat(1023), string_1024: 'w'.repeat(1024), string_40000: 'v'.repeat(40000),
  string_33000: 'u'.repeat(33000), string_unicode: 'héllo wörld € 中文 ' + emoji,
  string_emoji_chunk_edge: 'a'.repeat(32767) + emoji + 'b'.repeat(100),
  string_emoji_only: emoji.repeat(20),
  date_ms: new Date(1700000000123), date_minute: new Date(1700000040000),
  binary_0: Buffer.alloc(0), binary_15: Buffer.alloc(15, 7), binary_16: Buffer.alloc(16, 8),
  binary_1023: Buffer.alloc(1023, 9), binary_1024: Buffer.alloc(1024, 10), binary_10000: Buffer.alloc(10000, 11),
  list_empty: [], list_3: [ 1, 'two', null ], list_10: [ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 ],
  list_typed_int: { $class: '[int', $: [ 1, 2, 3 ] },
  list_typed_string: { $class: '[java.lang.String', $: [ 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i' ] },
  list_arraylist: { $class: 'java.util.ArrayList', $: [ 'p', 'q' ] },
  list_nested: [ [ 1, [ 2, [ 3 ] ] ], [] ],
  list_depth_60: nest(60, 'leaf'),
  map_empty: {}, map_small: { a: 1, b: 'two', c: null, d: [ 1 ] },
  map_typed: { $class: 'java.util.HashMap', $: { k1: 'v1', k2: 'v2' } },
  map_int_keys: { $class: 'java.util.HashMap', $: new Map([ [ 1, 'one' ], [ 2, 'two' ] ]) },
  map_nested: { outer: { inner: { deep: true } } },
  object_point: point(1, 2),
  object_two_same_class: [ point(1, 2), point(3, 4) ],
  object_18_classes: manyClasses,
  object_nested: { $class: 'org.example.Line', $: { a: point(0, 0), b: point(5, 6), label: 'diag' } },
  ref_shared: [ shared, shared ],
  mixed: { ints: [ 1, 300, 70000 ], when: new Date(0), bin: Buffer.from('hi'), obj: point(7, 8) },
};

const lines = [];
for (const [name, value] of Object.entries(vectors)) {
  const buf = hessian.encode(value, '2.0');
  const back = canon(hessian.decode(buf, '2.0'));
  lines.push(`${name}\t${buf.toString('hex')}\t${JSON.stringify(back)}`);
}
fs.writeFileSync(path.join(__dirname, 'hessian_vectors.txt'), lines.join('\n') + '\n');
console.log(`wrote ${lines.length} vectors`);
