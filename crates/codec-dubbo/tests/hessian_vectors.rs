//! Hessian 2 vectors written by hessian.js (`tests/golden/hessian_vectors.js`) and Caucho Hessian
//! (`tests/golden/CauchoVectors.java`): every one is skipped exactly and decoded to the
//! canonical form of what the writer meant.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use codec_dubbo::hessian::{Reader, Value};
use serde_json::{Map, Value as Json, json};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Lists, maps and objects in the order a reader numbers them for references.
fn ref_table<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::List(_, items) => {
            out.push(v);
            items.iter().for_each(|i| ref_table(i, out));
        }
        Value::Map(_, entries) => {
            out.push(v);
            for (k, x) in entries {
                ref_table(k, out);
                ref_table(x, out);
            }
        }
        Value::Object(_, fields) => {
            out.push(v);
            fields.iter().for_each(|(_, x)| ref_table(x, out));
        }
        _ => {}
    }
}

/// The canonical JSON the generator writes for hessian.js's decoding (references resolved).
fn canon(v: &Value, refs: &[&Value]) -> Json {
    let canon = |v: &Value| canon(v, refs);
    match v {
        Value::Ref(n) => canon(refs[*n]),
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(f64::from(*i)),
        Value::Long(l) if l.unsigned_abs() <= 1 << 53 => json!(*l as f64),
        Value::Long(l) => json!(l.to_string()),
        Value::Double(d) => json!(d),
        Value::Date(ms) => json!({ "$date": *ms as f64 }),
        Value::Binary(b) if b.len() > 1000 => {
            json!({ "$binlen": b.len() as f64, "$head": hex_of(&b[..4]) })
        }
        Value::Binary(b) => json!({ "$bin": hex_of(b) }),
        Value::String(s) => {
            let units: Vec<u16> = s.encode_utf16().collect();
            if units.len() > 2000 {
                let head = String::from_utf16_lossy(&units[..8]);
                let tail = String::from_utf16_lossy(&units[units.len() - 8..]);
                json!({ "$strlen": units.len() as f64, "$head": head, "$tail": tail })
            } else {
                json!(s)
            }
        }
        Value::List(_, items) => Json::Array(items.iter().map(&canon).collect()),
        Value::Map(_, entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let key = match k {
                    Value::String(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    Value::Long(l) => l.to_string(),
                    other => format!("{other:?}"),
                };
                m.insert(key, canon(v));
            }
            Json::Object(m)
        }
        Value::Object(_, fields) => {
            Json::Object(fields.iter().map(|(k, v)| (k.clone(), canon(v))).collect())
        }
    }
}

/// Numbers as f64 so that `1` and `1.0` compare equal.
fn norm(v: Json) -> Json {
    match v {
        Json::Number(n) => json!(n.as_f64().unwrap()),
        Json::Array(a) => Json::Array(a.into_iter().map(norm).collect()),
        Json::Object(o) => Json::Object(o.into_iter().map(|(k, v)| (k, norm(v))).collect()),
        other => other,
    }
}

#[test]
fn hessian_js_vectors() {
    let n = check(include_str!("golden/hessian_vectors.txt"));
    assert!(n >= 70, "only {n} vectors");
}

/// Vectors written by Caucho Hessian 4.0.38 (`tests/golden/CauchoVectors.java`).
#[test]
fn caucho_vectors() {
    let n = check(include_str!("golden/caucho_vectors.txt"));
    assert!(n >= 30, "only {n} vectors");
}

fn check(text: &str) -> usize {
    let mut n = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut parts = line.splitn(3, '\t');
        let (name, bytes, expected) = (
            parts.next().unwrap(),
            hex(parts.next().unwrap()),
            parts.next().unwrap(),
        );
        let mut skip = Reader::new(&bytes);
        skip.skip_value()
            .unwrap_or_else(|e| panic!("{name}: skip: {e}"));
        assert!(skip.at_end(), "{name}: skip stopped at {}", skip.pos());
        let mut r = Reader::new(&bytes);
        let value = r
            .read_value()
            .unwrap_or_else(|e| panic!("{name}: read: {e}"));
        assert!(r.at_end(), "{name}: read stopped at {}", r.pos());
        let expected: Json = serde_json::from_str(expected).unwrap();
        let mut refs = Vec::new();
        ref_table(&value, &mut refs);
        assert_eq!(norm(canon(&value, &refs)), norm(expected), "{name}");
        // Every strict prefix is an error, never a panic or a wrong success.
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            if cut < bytes.len() {
                assert!(
                    Reader::new(&bytes[..cut]).skip_value().is_err(),
                    "{name} cut at {cut}"
                );
            }
        }
        n += 1;
    }
    n
}
