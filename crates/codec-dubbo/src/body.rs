//! Hessian2 bodies of dubbo2 requests and responses: what routing needs, and where the
//! attachment map sits for mutations.

use std::ops::Range;

use meta_protocol::{CodecError, Metadata, Mutation};

use crate::hessian::{self, Reader, encode};

fn malformed(what: &str, e: hessian::Error) -> CodecError {
    CodecError::malformed(format!("dubbo: {what}: {e}"))
}

/// One attachment entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Bytes of the key in the body.
    pub key_raw: Range<usize>,
    /// Bytes of the key and the value in the body.
    pub raw: Range<usize>,
    /// The key, if it is a string.
    pub key: Option<String>,
    /// The value, if it is a string.
    pub value: Option<String>,
}

/// The attachment map of a body.
#[derive(Debug, Clone, Default)]
pub struct Attachments {
    /// Bytes of the whole value in the body.
    pub span: Range<usize>,
    /// Bytes of the map opening (`H`, or `M` and its type) to reuse; empty for a null or
    /// opaque value.
    pub open: Range<usize>,
    /// The value is a map we can rewrite (not a reference or another kind of value).
    pub rewritable: bool,
    /// Entries in order.
    pub entries: Vec<Entry>,
}

impl Attachments {
    /// String → string pairs.
    pub fn strings(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .filter_map(|e| Some((e.key.as_deref()?, e.value.as_deref()?)))
    }

    /// Absent attachments located at `at` (the body ends there): written as a new map.
    fn absent(at: usize) -> Self {
        Self {
            span: at..at,
            open: 0..0,
            rewritable: true,
            entries: Vec::new(),
        }
    }

    /// Reads the value at the reader's position as an attachment map.
    fn read(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let err = |e| malformed("attachments", e);
        let start = r.pos();
        let mut att = Attachments::absent(start);
        match r.peek() {
            Some(b'N') => {
                r.skip_value().map_err(err)?;
            }
            Some(b'H') | Some(b'M') => {
                let typed = r.peek() == Some(b'M');
                r.skip_bytes(1).map_err(err)?;
                if typed {
                    r.read_type().map_err(err)?;
                }
                att.open = start..r.pos();
                while !r.end_marker().map_err(err)? {
                    let e0 = r.pos();
                    let key = read_opt_str(r).map_err(err)?;
                    let key_raw = e0..r.pos();
                    let value = read_opt_str(r).map_err(err)?;
                    att.entries.push(Entry {
                        key_raw,
                        raw: e0..r.pos(),
                        key,
                        value,
                    });
                }
            }
            _ => {
                // A reference to an earlier map or another kind of value: not ours to rewrite.
                r.skip_value().map_err(err)?;
                att.rewritable = false;
            }
        }
        att.span = start..r.pos();
        Ok(att)
    }

    /// The map with `mutation` applied, or `None` if nothing changes. Existing keys (matched
    /// ASCII-case-insensitively) keep their place and spelling; new keys are appended; entries
    /// that are not string → string are copied byte for byte.
    pub fn merged(&self, body: &[u8], mutation: &Mutation) -> Result<Option<Vec<u8>>, CodecError> {
        if !self.rewritable {
            return Err(CodecError::unsupported(
                "dubbo: the attachments are not an inline map (reference or other value)",
            ));
        }
        let mut out = Vec::with_capacity(self.span.len() + 64);
        match body.get(self.open.clone()) {
            Some(open) if !open.is_empty() => out.extend_from_slice(open),
            _ => out.push(b'H'),
        }
        let mut used = vec![false; mutation.len()];
        let mut changed = self.open.is_empty(); // a null or absent map becomes a map
        for e in &self.entries {
            let hit = e.key.as_deref().and_then(|k| {
                mutation
                    .iter()
                    .enumerate()
                    .find(|(_, (mk, _))| mk.eq_ignore_ascii_case(k))
            });
            match hit {
                Some((i, (_, v))) => {
                    used[i] = true;
                    changed |= e.value.as_deref() != Some(v);
                    out.extend_from_slice(slice(body, &e.key_raw)?);
                    encode::write_string(&mut out, v);
                }
                None => out.extend_from_slice(slice(body, &e.raw)?),
            }
        }
        for ((k, v), used) in mutation.iter().zip(used) {
            if !used {
                changed = true;
                encode::write_string(&mut out, k);
                encode::write_string(&mut out, v);
            }
        }
        out.push(b'Z');
        Ok(changed.then_some(out))
    }
}

fn slice<'a>(body: &'a [u8], r: &Range<usize>) -> Result<&'a [u8], CodecError> {
    body.get(r.clone())
        .ok_or_else(|| CodecError::malformed("dubbo: attachment offsets out of range"))
}

/// A string, or `None` after skipping any other value.
fn read_opt_str(r: &mut Reader<'_>) -> hessian::Result<Option<String>> {
    match r.peek() {
        Some(c) if Reader::is_string_code(c) => r.read_string().map(Some),
        _ => r.skip_value().map(|()| None),
    }
}

/// Number of parameters in a JVM method descriptor's parameter list (`Ljava/lang/String;I[J`
/// is 3), or `None` if it is not a valid one.
pub fn count_params(desc: &str) -> Option<usize> {
    let b = desc.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < b.len() {
        while b.get(i) == Some(&b'[') {
            i += 1;
        }
        match b.get(i)? {
            b'B' | b'C' | b'D' | b'F' | b'I' | b'J' | b'S' | b'Z' => i += 1,
            b'L' => {
                let semi = b[i..].iter().position(|&c| c == b';')?;
                if semi < 2 {
                    return None; // `L;`
                }
                i += semi + 1;
            }
            _ => return None,
        }
        n += 1;
    }
    Some(n)
}

/// The invocation fields before the arguments: what routing on `interface`, `method` and
/// `version` needs.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    /// Service path (interface).
    pub path: Option<String>,
    /// Service version.
    pub version: Option<String>,
    /// Method name.
    pub method: Option<String>,
}

impl RequestHead {
    /// Reads the fields up to the parameter types; returns them with the number of arguments.
    fn read(r: &mut Reader<'_>) -> Result<(Self, usize), CodecError> {
        let field = |r: &mut Reader<'_>, what: &str| {
            r.read_opt_string()
                .map_err(|e| malformed(&format!("request {what}"), e))
        };
        field(r, "dubbo version")?;
        let path = field(r, "service path")?;
        let version = field(r, "service version")?;
        let method = field(r, "method name")?;
        let desc = field(r, "parameter types")?.unwrap_or_default();
        let Some(n) = count_params(&desc) else {
            return Err(CodecError::malformed(format!(
                "dubbo: invalid parameter type descriptor {desc:?}"
            )));
        };
        let head = Self {
            path,
            version,
            method,
        };
        Ok((head, n))
    }

    /// Parses the head of a request body; the arguments and attachments after it are not
    /// looked at (nor validated).
    pub fn parse(body: &[u8]) -> Result<Self, CodecError> {
        Self::read(&mut Reader::new(body)).map(|(head, _)| head)
    }

    /// Fills `meta`: `interface`, `method`, `version` (when non-empty).
    pub fn fill(&self, meta: &mut Metadata) {
        if let Some(p) = &self.path {
            meta.set("interface", p);
        }
        if let Some(m) = &self.method {
            meta.set(METHOD, m);
        }
        if let Some(v) = self.version.as_deref().filter(|v| !v.is_empty()) {
            meta.set("version", v);
        }
    }
}

/// The metadata key of the invoked method: always the invocation's, never an attachment's.
pub const METHOD: &str = "method";

/// What a request body says.
#[derive(Debug, Clone, Default)]
pub struct RequestBody {
    /// The fields before the arguments.
    pub head: RequestHead,
    /// Attachments (absent ones are located at the body end).
    pub attachments: Attachments,
}

impl RequestBody {
    /// Parses a whole request body: head, arguments (skipped), attachments.
    pub fn parse(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body);
        let (head, n) = RequestHead::read(&mut r)?;
        for i in 0..n {
            r.skip_value()
                .map_err(|e| malformed(&format!("argument {i}"), e))?;
        }
        let attachments = if r.at_end() {
            Attachments::absent(r.pos())
        } else {
            Attachments::read(&mut r)?
        };
        Ok(Self { head, attachments })
    }

    /// Fills `meta`: the head's keys, then every string attachment, which overrides
    /// `interface` and `version` but never `method`: the invoked method is the invocation's,
    /// so a route on `method` gives the same answer whether attachments are decoded or not.
    pub fn fill(&self, meta: &mut Metadata) {
        self.head.fill(meta);
        for (k, v) in self.attachments.strings() {
            if !k.eq_ignore_ascii_case(METHOD) {
                meta.set(k, v);
            }
        }
    }
}

/// RpcResult response types.
pub mod rtype {
    /// Exception.
    pub const EXCEPTION: i32 = 0;
    /// Null value with attachments.
    pub const NULL_WITH_ATTACHMENTS: i32 = 5;
    /// Offset between a type and its with-attachments variant.
    pub const WITH_ATTACHMENTS: i32 = 3;
}

/// What an OK response body says.
#[derive(Debug, Clone)]
pub struct ResponseBody {
    /// Response type 0..=5.
    pub rtype: i32,
    /// Bytes of the response type int.
    pub rtype_span: Range<usize>,
    /// Attachments of types 3, 4, 5.
    pub attachments: Option<Attachments>,
}

/// Reads and checks the response type at the start of an OK response body.
fn read_rtype(r: &mut Reader<'_>) -> Result<i32, CodecError> {
    let rtype = r.read_int().map_err(|e| malformed("response type", e))?;
    if !(rtype::EXCEPTION..=rtype::NULL_WITH_ATTACHMENTS).contains(&rtype) {
        return Err(CodecError::malformed(format!(
            "dubbo: unknown response type {rtype}"
        )));
    }
    Ok(rtype)
}

/// The response type of an OK response body; the value and attachments after it are not
/// looked at (nor validated).
pub fn response_type(body: &[u8]) -> Result<i32, CodecError> {
    read_rtype(&mut Reader::new(body))
}

/// Whether response type `rtype` is an exception (0 or 3).
pub fn is_exception(rtype: i32) -> bool {
    rtype % rtype::WITH_ATTACHMENTS == rtype::EXCEPTION
}

impl ResponseBody {
    /// Parses a whole OK response body.
    pub fn parse(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(body);
        let rtype = read_rtype(&mut r)?;
        let rtype_span = 0..r.pos();
        let attachments = if rtype >= rtype::WITH_ATTACHMENTS {
            if rtype != rtype::NULL_WITH_ATTACHMENTS {
                r.skip_value().map_err(|e| malformed("response value", e))?;
            }
            Some(Attachments::read(&mut r)?)
        } else {
            None
        };
        Ok(Self {
            rtype,
            rtype_span,
            attachments,
        })
    }
}
