//! ttrpc framing over a non-blocking unix stream: a 10-byte header (length u32 BE, stream id
//! u32 BE, type u8, flags u8) then a protobuf payload (`ttrpc.Request` / `ttrpc.Response`).
//! Used by the server side (containerd -> shim) and the event publisher (shim -> containerd).

use protobuf::Message;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use ttrpc::proto::{
    MESSAGE_HEADER_LENGTH, MESSAGE_LENGTH_MAX, MESSAGE_TYPE_REQUEST, MESSAGE_TYPE_RESPONSE,
};
use ttrpc::{Code, Request, Response, Status};

#[derive(Debug)]
pub struct Frame {
    pub stream_id: u32,
    pub kind: u8,
    pub payload: Vec<u8>,
}

pub struct Wire {
    pub sock: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
}

/// Append one frame to `out`.
pub fn encode(out: &mut Vec<u8>, stream_id: u32, kind: u8, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.push(kind);
    out.push(0);
    out.extend_from_slice(payload);
}

/// Take one complete frame off the front of `buf`.
pub fn decode(buf: &mut Vec<u8>) -> Result<Option<Frame>, String> {
    if buf.len() < MESSAGE_HEADER_LENGTH {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MESSAGE_LENGTH_MAX {
        return Err(format!(
            "ttrpc message of {len} bytes exceeds the maximum {MESSAGE_LENGTH_MAX}"
        ));
    }
    if buf.len() < MESSAGE_HEADER_LENGTH + len {
        return Ok(None);
    }
    let stream_id = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let kind = buf[8];
    let payload = buf[MESSAGE_HEADER_LENGTH..MESSAGE_HEADER_LENGTH + len].to_vec();
    buf.drain(..MESSAGE_HEADER_LENGTH + len);
    Ok(Some(Frame {
        stream_id,
        kind,
        payload,
    }))
}

impl Wire {
    pub fn new(sock: UnixStream) -> io::Result<Wire> {
        sock.set_nonblocking(true)?;
        Ok(Wire {
            sock,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
        })
    }

    /// Read what is available. Ok(false) when the peer closed.
    pub fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 8192];
        loop {
            match self.sock.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    pub fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        let f = decode(&mut self.rbuf)?;
        if self.rbuf.is_empty() && self.rbuf.capacity() > 64 * 1024 {
            self.rbuf = Vec::new();
        }
        Ok(f)
    }

    pub fn queue(&mut self, stream_id: u32, kind: u8, payload: &[u8]) {
        encode(&mut self.wbuf, stream_id, kind, payload);
    }

    /// Write what the socket takes. Ok(true) when everything is written.
    pub fn flush(&mut self) -> io::Result<bool> {
        while !self.wbuf.is_empty() {
            match self.sock.write(&self.wbuf) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.wbuf.capacity() > 64 * 1024 {
            self.wbuf = Vec::new();
        }
        Ok(true)
    }

    pub fn pending_write(&self) -> bool {
        !self.wbuf.is_empty()
    }
}

/// A response frame payload: either the method's response message or a status.
pub fn response_payload(result: Result<Vec<u8>, Status>) -> Vec<u8> {
    let mut r = Response::new();
    match result {
        Ok(p) => r.payload = p,
        Err(s) => r.status = protobuf::MessageField::some(s),
    }
    r.write_to_bytes().unwrap_or_default()
}

pub fn status(code: Code, msg: impl Into<String>) -> Status {
    let mut s = Status::new();
    s.code = code.into();
    s.message = msg.into();
    s
}

pub fn request_payload(
    service: &str,
    method: &str,
    payload: Vec<u8>,
    metadata: &[(&str, &str)],
) -> Vec<u8> {
    let mut r = Request::new();
    r.service = service.to_string();
    r.method = method.to_string();
    r.payload = payload;
    for (k, v) in metadata {
        let mut kv = ttrpc::proto::KeyValue::new();
        kv.key = k.to_string();
        kv.value = v.to_string();
        r.metadata.push(kv);
    }
    r.write_to_bytes().unwrap_or_default()
}

pub const REQUEST: u8 = MESSAGE_TYPE_REQUEST;
pub const RESPONSE: u8 = MESSAGE_TYPE_RESPONSE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_roundtrip_and_partial() {
        let mut b = Vec::new();
        encode(&mut b, 3, REQUEST, b"hello");
        encode(&mut b, 5, RESPONSE, b"");
        assert_eq!(&b[..10], &[0, 0, 0, 5, 0, 0, 0, 3, 1, 0]);
        let mut partial = b[..12].to_vec();
        assert!(decode(&mut partial).unwrap().is_none());
        let f = decode(&mut b).unwrap().unwrap();
        assert_eq!(
            (f.stream_id, f.kind, f.payload.as_slice()),
            (3, REQUEST, &b"hello"[..])
        );
        let f = decode(&mut b).unwrap().unwrap();
        assert_eq!((f.stream_id, f.kind, f.payload.len()), (5, RESPONSE, 0));
        assert!(b.is_empty());
    }

    #[test]
    fn too_large() {
        let mut b = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0];
        assert!(decode(&mut b).is_err());
    }

    #[test]
    fn response_encoding() {
        let p = response_payload(Err(status(Code::NOT_FOUND, "nope")));
        let r = Response::parse_from_bytes(&p).unwrap();
        assert_eq!(r.status.code.value(), Code::NOT_FOUND as i32);
        assert_eq!(r.status.message, "nope");
        let p = response_payload(Ok(vec![1, 2]));
        let r = Response::parse_from_bytes(&p).unwrap();
        assert!(r.status.is_none());
        assert_eq!(r.payload, vec![1, 2]);
    }
}
