//! Building decoded Hessian values (used for attachments, tests and diagnostics).

use super::{MAX_DEPTH, Reader, Result};

/// A decoded Hessian 2 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `N`.
    Null,
    /// `T` / `F`.
    Bool(bool),
    /// 32-bit int.
    Int(i32),
    /// 64-bit long.
    Long(i64),
    /// Double.
    Double(f64),
    /// Date, in milliseconds since the epoch (UTC).
    Date(i64),
    /// Binary data.
    Binary(Vec<u8>),
    /// String.
    String(String),
    /// List, with its type name if typed.
    List(Option<String>, Vec<Value>),
    /// Map, with its type name if typed.
    Map(Option<String>, Vec<(Value, Value)>),
    /// Object instance: class name and field name/value pairs.
    Object(String, Vec<(String, Value)>),
    /// Reference to the n-th list, map or object of the stream.
    Ref(usize),
}

impl Value {
    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

impl Reader<'_> {
    /// Reads one value of any kind.
    pub fn read_value(&mut self) -> Result<Value> {
        self.value_at(0)
    }

    fn value_at(&mut self, depth: usize) -> Result<Value> {
        loop {
            let code = self.byte()?;
            return Ok(match code {
                b'N' => Value::Null,
                b'T' => Value::Bool(true),
                b'F' => Value::Bool(false),
                0x80..=0xd7 | b'I' => Value::Int(self.int_body(code)?),
                0xd8..=0xff | 0x38..=0x3f | 0x59 | b'L' => Value::Long(self.long_body(code)?),
                0x5b..=0x5f | b'D' => Value::Double(self.double_body(code)?),
                0x4a => Value::Date(i64::from_be_bytes(self.be()?)),
                0x4b => Value::Date(i64::from(i32::from_be_bytes(self.be()?)) * 60_000),
                0x00..=0x1f | 0x30..=0x33 | b'R' | b'S' => {
                    self.pos -= 1;
                    Value::String(self.read_string()?)
                }
                0x20..=0x2f | 0x34..=0x37 | b'A' | b'B' => {
                    let mut out = Vec::new();
                    self.binary_chunks(code, Some(&mut out))?;
                    Value::Binary(out)
                }
                b'Q' => Value::Ref(self.read_count()?),
                b'C' => {
                    self.class_def()?;
                    continue;
                }
                _ => self.compound(code, depth)?,
            });
        }
    }

    fn compound(&mut self, code: u8, depth: usize) -> Result<Value> {
        if depth >= MAX_DEPTH {
            self.pos -= 1;
            return self.err("nesting too deep");
        }
        let d = depth + 1;
        Ok(match code {
            b'U' | b'W' => {
                let ty = if code == b'U' {
                    Some(self.read_type()?)
                } else {
                    None
                };
                let mut items = Vec::new();
                while !self.end_marker()? {
                    items.push(self.value_at(d)?);
                }
                Value::List(ty, items)
            }
            b'V' | b'X' | 0x70..=0x7f => {
                let typed = matches!(code, b'V' | 0x70..=0x77);
                let ty = if typed { Some(self.read_type()?) } else { None };
                let n = self.fixed_len(code)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value_at(d)?);
                }
                Value::List(ty, items)
            }
            b'M' | b'H' => {
                let ty = if code == b'M' {
                    Some(self.read_type()?)
                } else {
                    None
                };
                let mut entries = Vec::new();
                while !self.end_marker()? {
                    let k = self.value_at(d)?;
                    let v = self.value_at(d)?;
                    entries.push((k, v));
                }
                Value::Map(ty, entries)
            }
            b'O' | 0x60..=0x6f => {
                let class = self.instance_class(code)?;
                let (name, names) = match self.classes.get(class) {
                    Some((n, f)) => (n.clone(), f.clone()),
                    None => return self.err("object of an undefined class"),
                };
                let mut fields = Vec::with_capacity(names.len());
                for name in names {
                    let v = self.value_at(d)?;
                    fields.push((name, v));
                }
                Value::Object(name, fields)
            }
            _ => {
                self.pos -= 1;
                return self.err("unknown or misplaced type code");
            }
        })
    }
}
