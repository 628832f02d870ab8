//! gRPC message framing: each message is a 1-byte compressed flag, a 4-byte big-endian length and
//! the protobuf bytes. Sans-IO: bytes in, whole messages out, with the size limit and the
//! compression rules enforced as statuses.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

use super::status::{Code, Status};

/// Length of the frame header before each message.
pub const HEADER_LEN: usize = 5;

/// Frames `message` for sending; refuses messages larger than `max_len`.
pub fn encode<M: Message>(message: &M, max_len: usize) -> Result<Bytes, Status> {
    let len = message.encoded_len();
    if len > max_len {
        return Err(Status::new(
            Code::ResourceExhausted,
            format!("response message of {len} bytes exceeds the limit of {max_len} bytes"),
        ));
    }
    let mut buf = BytesMut::with_capacity(HEADER_LEN + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    message
        .encode(&mut buf)
        .map_err(|e| Status::new(Code::Internal, e.to_string()))?;
    Ok(buf.freeze())
}

/// Reassembles messages from a request body's chunks.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    max_len: usize,
}

impl Decoder {
    /// A decoder refusing messages longer than `max_len`.
    pub fn new(max_len: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_len,
        }
    }

    /// Adds a chunk of the body.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next whole message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, Status> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let flag = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        match flag {
            0 => {}
            1 => {
                return Err(Status::new(
                    Code::Unimplemented,
                    "compressed message received, but no grpc-encoding was negotiated (only identity is supported)",
                ));
            }
            other => {
                return Err(Status::new(
                    Code::Internal,
                    format!("invalid compressed-flag {other} in message frame"),
                ));
            }
        }
        if len > self.max_len {
            return Err(Status::new(
                Code::ResourceExhausted,
                format!(
                    "request message of {len} bytes exceeds the limit of {} bytes",
                    self.max_len
                ),
            ));
        }
        if self.buf.len() < HEADER_LEN + len {
            self.buf.reserve(HEADER_LEN + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Checks that the body did not end inside a message.
    pub fn finish(&self) -> Result<(), Status> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Status::new(
                Code::Internal,
                format!(
                    "request body ended inside a message ({} stray bytes)",
                    self.buf.len()
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(flag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn reassembles_messages_split_anywhere() {
        let mut wire = frame(0, b"hello");
        wire.extend(frame(0, b""));
        wire.extend(frame(0, &[7; 300]));
        for split in 0..wire.len() {
            let mut decoder = Decoder::new(1024);
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                decoder.push(part);
                while let Some(message) = decoder.next_message().unwrap() {
                    got.push(message);
                }
            }
            assert_eq!(
                got,
                vec![&b"hello"[..], &b""[..], &[7; 300][..]],
                "split at {split}"
            );
            decoder.finish().unwrap();
        }
    }

    #[test]
    fn oversize_is_resource_exhausted_before_buffering() {
        let mut decoder = Decoder::new(10);
        decoder.push(&frame(0, &[0; 11])[..HEADER_LEN]);
        assert_eq!(
            decoder.next_message().unwrap_err().code,
            Code::ResourceExhausted
        );
    }

    #[test]
    fn compressed_without_encoding_is_unimplemented() {
        let mut decoder = Decoder::new(10);
        decoder.push(&frame(1, b"x"));
        assert_eq!(
            decoder.next_message().unwrap_err().code,
            Code::Unimplemented
        );
        let mut decoder = Decoder::new(10);
        decoder.push(&frame(9, b"x"));
        assert_eq!(decoder.next_message().unwrap_err().code, Code::Internal);
    }

    #[test]
    fn truncated_body_is_an_error() {
        let mut decoder = Decoder::new(10);
        decoder.push(&frame(0, b"abc")[..6]);
        assert_eq!(decoder.next_message().unwrap(), None);
        assert_eq!(decoder.finish().unwrap_err().code, Code::Internal);
    }

    #[test]
    fn encode_frames_and_limits() {
        let message = prost_types::Duration {
            seconds: 5,
            nanos: 0,
        };
        let framed = encode(&message, 100).unwrap();
        let mut decoder = Decoder::new(100);
        decoder.push(&framed);
        let body = decoder.next_message().unwrap().unwrap();
        assert_eq!(prost_types::Duration::decode(body).unwrap(), message);
        assert_eq!(
            encode(&message, 1).unwrap_err().code,
            Code::ResourceExhausted
        );
    }
}
