//! SFTP requests as a client puts them on the wire, for the tests that play the client byte by byte.
#![allow(dead_code)] // each test binary uses the part it needs

use bytes::{BufMut, Bytes, BytesMut};

const INIT: u8 = 1;
const OPEN: u8 = 3;

/// A packet: length, type, body.
pub fn packet(kind: u8, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(body.len() + 5);
    b.put_u32(body.len() as u32 + 1);
    b.put_u8(kind);
    b.put_slice(body);
    b.freeze()
}

/// An SFTP string: length, then the bytes.
pub fn string(b: &mut BytesMut, s: &[u8]) {
    b.put_u32(s.len() as u32);
    b.put_slice(s);
}

/// A request whose fields are already encoded.
pub fn raw_request(kind: u8, id: u32, fields: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(fields.len() + 4);
    b.put_u32(id);
    b.put_slice(fields);
    packet(kind, &b)
}

/// A request: id, then string fields.
pub fn request(kind: u8, id: u32, strings: &[&[u8]]) -> Bytes {
    let mut b = BytesMut::new();
    for s in strings {
        string(&mut b, s);
    }
    raw_request(kind, id, &b)
}

/// A request on an open handle: the handle, then `rest`.
pub fn handle_request(kind: u8, id: u32, handle: &[u8], rest: &[u8]) -> Bytes {
    let mut fields = BytesMut::with_capacity(handle.len() + rest.len() + 4);
    string(&mut fields, handle);
    fields.put_slice(rest);
    raw_request(kind, id, &fields)
}

/// INIT for version 3.
pub fn init() -> Bytes {
    packet(INIT, &3u32.to_be_bytes())
}

/// OPEN of `path` with `pflags` and no attributes.
pub fn open_request(id: u32, path: &[u8], pflags: u32) -> Bytes {
    let mut fields = BytesMut::new();
    string(&mut fields, path);
    fields.put_u32(pflags);
    fields.put_u32(0);
    raw_request(OPEN, id, &fields)
}

/// READ's fields after the handle.
pub fn offset_len(offset: u64, len: u32) -> Vec<u8> {
    [offset.to_be_bytes().as_slice(), len.to_be_bytes().as_slice()].concat()
}

/// WRITE's fields after the handle.
pub fn offset_data(offset: u64, data: &[u8]) -> BytesMut {
    let mut fields = BytesMut::with_capacity(data.len() + 12);
    fields.put_u64(offset);
    string(&mut fields, data);
    fields
}
