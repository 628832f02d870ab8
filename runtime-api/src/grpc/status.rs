//! gRPC status codes and how a status is written as `grpc-status` / `grpc-message` (percent-encoded
//! as the gRPC HTTP/2 spec requires). Sans-IO.

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// The gRPC status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[allow(missing_docs)] // the names are the spec's
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl Code {
    /// Every code, by number.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code for a configured refusal `status`: 1-16 is that gRPC code; anything else is an
    /// HTTP status, mapped as the gRPC spec ("HTTP to gRPC Status Code Mapping") maps one, so
    /// MOSN's flow-control default 509 is `UNKNOWN`.
    pub fn for_refusal_status(status: u16) -> Code {
        match status {
            1..=16 => Code::ALL[usize::from(status)],
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }
}

/// A call's outcome: a code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The code.
    pub code: Code,
    /// Why (empty for OK).
    pub message: String,
}

impl Status {
    /// A status with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Success.
    pub fn ok() -> Self {
        Self::new(Code::Ok, "")
    }

    /// Writes `grpc-status` and (if any) the percent-encoded `grpc-message` into `headers`.
    pub fn write_to(&self, headers: &mut HeaderMap) {
        const CODES: [&str; 17] = [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
            "16",
        ];
        headers.insert(
            GRPC_STATUS,
            HeaderValue::from_static(CODES[self.code as usize]),
        );
        if !self.message.is_empty() {
            let encoded = percent_encode(&self.message);
            // Percent-encoding leaves only visible ASCII, which is always a valid header value.
            if let Ok(value) = HeaderValue::from_str(&encoded) {
                headers.insert(GRPC_MESSAGE, value);
            }
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

/// Percent-encodes a `grpc-message`: every byte outside printable ASCII (0x20..=0x7E), and `%`.
pub fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encodes_as_the_spec_says() {
        assert_eq!(percent_encode("plain text: ok"), "plain text: ok");
        assert_eq!(percent_encode("100%"), "100%25");
        assert_eq!(percent_encode("a\nb\tc"), "a%0Ab%09c");
        assert_eq!(percent_encode("ünï"), "%C3%BCn%C3%AF");
    }

    #[test]
    fn refusal_statuses_are_grpc_codes_or_mapped_http_statuses() {
        assert_eq!(Code::for_refusal_status(509), Code::Unknown);
        assert_eq!(Code::for_refusal_status(8), Code::ResourceExhausted);
        assert_eq!(Code::for_refusal_status(16), Code::Unauthenticated);
        assert_eq!(Code::for_refusal_status(429), Code::Unavailable);
        assert_eq!(Code::for_refusal_status(403), Code::PermissionDenied);
        assert!(Code::ALL.iter().enumerate().all(|(i, c)| *c as usize == i));
    }

    #[test]
    fn writes_status_headers() {
        let mut headers = HeaderMap::new();
        Status::new(Code::ResourceExhausted, "too big: 5%").write_to(&mut headers);
        assert_eq!(headers["grpc-status"], "8");
        assert_eq!(headers["grpc-message"], "too big: 5%25");
        let mut headers = HeaderMap::new();
        Status::ok().write_to(&mut headers);
        assert_eq!(headers["grpc-status"], "0");
        assert!(!headers.contains_key("grpc-message"));
    }
}
