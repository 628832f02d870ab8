//! gRPC message framing: each message is a 1-byte compressed flag, a 4-byte big-endian length and
//! the protobuf bytes. Sans-IO: bytes in, whole messages out, with the size limit and the
//! compression rules enforced as statuses. The decoder holds only bytes that have arrived: a
//! declared length over the limit is refused from the header, and none is reserved ahead.

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

/// Reassembles messages from a request body's chunks. A message that arrives whole in one chunk
/// (the usual unary request) is copied straight out of it into an allocation of its own size;
/// only messages split across chunks are assembled in a buffer. Messages never share the chunk's
/// memory (h2's read buffer), so a handler that keeps one (an in-memory store keeps the value's
/// bytes) holds only what it keeps.
#[derive(Debug)]
pub struct Decoder {
    /// The last chunk pushed, while nothing else is buffered.
    chunk: Bytes,
    /// Parts of messages split across chunks.
    buf: BytesMut,
    max_len: usize,
}

impl Decoder {
    /// A decoder refusing messages longer than `max_len`.
    pub fn new(max_len: usize) -> Self {
        Self {
            chunk: Bytes::new(),
            buf: BytesMut::new(),
            max_len,
        }
    }

    /// Adds a chunk of the body.
    pub fn push(&mut self, chunk: Bytes) {
        if self.chunk.is_empty() && self.buf.is_empty() {
            self.chunk = chunk;
            return;
        }
        self.assemble();
        self.buf.extend_from_slice(&chunk);
    }

    /// Bytes held: the part of the next message that has arrived.
    pub fn buffered(&self) -> usize {
        self.chunk.len() + self.buf.len()
    }

    /// The next whole message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, Status> {
        if !self.chunk.is_empty() {
            match self.message_len(&self.chunk)? {
                Some(len) if self.chunk.len() >= HEADER_LEN + len => {
                    let message = Bytes::copy_from_slice(&self.chunk[HEADER_LEN..HEADER_LEN + len]);
                    self.chunk.advance(HEADER_LEN + len);
                    return Ok(Some(message));
                }
                // The rest of the message is in chunks still to come.
                _ => self.assemble(),
            }
        }
        let Some(len) = self.message_len(&self.buf)? else {
            return Ok(None);
        };
        // No room is reserved for the rest ahead of its arrival: a header alone must not make
        // the decoder hold `len` bytes.
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Checks that the body did not end inside a message.
    pub fn finish(&self) -> Result<(), Status> {
        match self.buffered() {
            0 => Ok(()),
            stray => Err(Status::new(
                Code::Internal,
                format!("request body ended inside a message ({stray} stray bytes)"),
            )),
        }
    }

    /// Moves what is left of the chunk into the assembly buffer.
    fn assemble(&mut self) {
        self.buf.extend_from_slice(&self.chunk);
        self.chunk = Bytes::new();
    }

    /// The length of the message whose frame starts `bytes`, once its header has arrived; the
    /// status of a header that declares a compressed or oversized message.
    fn message_len(&self, bytes: &[u8]) -> Result<Option<usize>, Status> {
        let Some(&[flag, l0, l1, l2, l3]) = bytes.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
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
        Ok(Some(len))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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
                decoder.push(Bytes::copy_from_slice(part));
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
    fn a_whole_message_is_copied_out_of_its_chunk_without_an_assembly_buffer() {
        let wire = Bytes::from(frame(0, b"hello"));
        let chunk = wire.as_ptr() as usize..wire.as_ptr() as usize + wire.len();
        let mut decoder = Decoder::new(100);
        decoder.push(wire.clone());
        let message = decoder.next_message().unwrap().unwrap();
        assert_eq!(&message[..], b"hello");
        assert!(
            !chunk.contains(&(message.as_ptr() as usize)),
            "the message shares the chunk's memory"
        );
        assert_eq!(decoder.buffered(), 0);
        assert_eq!(decoder.buf.capacity(), 0);
        decoder.finish().unwrap();
    }

    #[test]
    fn oversize_is_resource_exhausted_before_buffering() {
        let mut decoder = Decoder::new(10);
        decoder.push(Bytes::copy_from_slice(&frame(0, &[0; 11])[..HEADER_LEN]));
        assert_eq!(
            decoder.next_message().unwrap_err().code,
            Code::ResourceExhausted
        );
    }

    #[test]
    fn compressed_without_encoding_is_unimplemented() {
        let mut decoder = Decoder::new(10);
        decoder.push(frame(1, b"x").into());
        assert_eq!(
            decoder.next_message().unwrap_err().code,
            Code::Unimplemented
        );
        let mut decoder = Decoder::new(10);
        decoder.push(frame(9, b"x").into());
        assert_eq!(decoder.next_message().unwrap_err().code, Code::Internal);
    }

    #[test]
    fn truncated_body_is_an_error() {
        let mut decoder = Decoder::new(10);
        decoder.push(Bytes::copy_from_slice(&frame(0, b"abc")[..6]));
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
        decoder.push(framed);
        let body = decoder.next_message().unwrap().unwrap();
        assert_eq!(prost_types::Duration::decode(body).unwrap(), message);
        assert_eq!(
            encode(&message, 1).unwrap_err().code,
            Code::ResourceExhausted
        );
    }

    /// `wire` cut into chunks of the given sizes (cycled), each pushed and then drained; the
    /// messages until the first error, and that error. Checks after every push that the memory
    /// held follows the bytes pushed, and after every drain that what stays buffered is less than
    /// one whole frame of the limit: a part of the next message only.
    fn feed(wire: &[u8], chunk_sizes: &[usize], max_len: usize) -> (Vec<Bytes>, Option<Status>) {
        let mut decoder = Decoder::new(max_len);
        let mut messages = Vec::new();
        let mut rest = wire;
        let mut pushed = 0;
        for &size in chunk_sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, after) = rest.split_at(size.min(rest.len()));
            rest = after;
            decoder.push(Bytes::copy_from_slice(chunk));
            pushed += chunk.len();
            // Memory follows what arrived (growth by doubling), never a declared length.
            assert!(
                decoder.buf.capacity() <= 2 * pushed + 64,
                "capacity {} after {pushed} bytes",
                decoder.buf.capacity()
            );
            loop {
                match decoder.next_message() {
                    Ok(Some(message)) => {
                        assert!(message.len() <= max_len, "{} > {max_len}", message.len());
                        messages.push(message);
                    }
                    Ok(None) => break,
                    Err(status) => return (messages, Some(status)),
                }
            }
            assert!(
                decoder.buffered() < HEADER_LEN.saturating_add(max_len),
                "{} bytes buffered with a limit of {max_len}",
                decoder.buffered()
            );
        }
        let ended = decoder.finish().err();
        (messages, ended)
    }

    /// A frame's compressed flag: mostly 0, sometimes 1 (compressed) or any other byte.
    fn flag() -> impl Strategy<Value = u8> {
        prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => any::<u8>()]
    }

    proptest! {
        /// Frames of any flags and sizes, split anywhere: every message up to the first bad frame
        /// comes out whole and in order, and the first bad one gives its status.
        #[test]
        fn frames_split_anywhere_decode_up_to_the_first_bad_one(
            frames in prop::collection::vec((flag(), prop::collection::vec(any::<u8>(), 0..80)), 0..8),
            chunk_sizes in prop::collection::vec(1usize..40, 1..8),
            max_len in 0usize..100,
        ) {
            let wire: Vec<u8> = frames.iter().flat_map(|(f, body)| frame(*f, body)).collect();
            let (messages, error) = feed(&wire, &chunk_sizes, max_len);
            let good = frames
                .iter()
                .take_while(|(f, body)| *f == 0 && body.len() <= max_len)
                .count();
            let expected: Vec<&[u8]> = frames[..good].iter().map(|(_, b)| b.as_slice()).collect();
            prop_assert_eq!(messages.iter().map(|m| &m[..]).collect::<Vec<_>>(), expected);
            let expected_code = frames.get(good).map(|(f, _)| match f {
                0 => Code::ResourceExhausted,
                1 => Code::Unimplemented,
                _ => Code::Internal,
            });
            prop_assert_eq!(error.map(|status| status.code), expected_code);
        }

        /// Any bytes at all, any limit (up to the largest a frame can declare), split anywhere:
        /// no panic, no message over the limit, nothing buffered beyond one frame of the limit.
        #[test]
        fn any_bytes_never_panic_or_overbuffer(
            wire in prop::collection::vec(any::<u8>(), 0..600),
            chunk_sizes in prop::collection::vec(1usize..200, 1..8),
            max_len in prop_oneof![0usize..64, Just(u32::MAX as usize), any::<usize>()],
        ) {
            let (messages, _) = feed(&wire, &chunk_sizes, max_len);
            let consumed: usize = messages.iter().map(|m| HEADER_LEN + m.len()).sum();
            prop_assert!(consumed <= wire.len());
        }

        /// A declared length over the limit is refused from the header alone, whatever follows.
        #[test]
        fn oversize_is_refused_from_the_header(max_len in 0usize..1_000_000, over in 1u32..1_000, tail in prop::collection::vec(any::<u8>(), 0..16)) {
            let declared = u32::try_from(max_len).unwrap() + over;
            let mut wire = vec![0u8];
            wire.extend_from_slice(&declared.to_be_bytes());
            wire.extend_from_slice(&tail);
            let (messages, error) = feed(&wire, &[wire.len()], max_len);
            prop_assert!(messages.is_empty());
            prop_assert_eq!(error.map(|s| s.code), Some(Code::ResourceExhausted));
        }
    }
}
