//! The `grpc-timeout` request header: up to 8 digits and a unit (H, M, S, m, u, n). Sans-IO.

use std::time::Duration;

use super::status::{Code, Status};

/// Parses a `grpc-timeout` value.
pub fn parse(value: &str) -> Result<Duration, Status> {
    let malformed = || {
        Status::new(
            Code::Internal,
            format!("malformed grpc-timeout \"{value}\""),
        )
    };
    if value.len() < 2 || value.len() > 9 {
        return Err(malformed());
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let amount: u64 = digits.parse().map_err(|_| malformed())?;
    Ok(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return Err(malformed()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse("2H").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse("3M").unwrap(), Duration::from_secs(180));
        assert_eq!(parse("1S").unwrap(), Duration::from_secs(1));
        assert_eq!(parse("250m").unwrap(), Duration::from_millis(250));
        assert_eq!(
            parse("99999999u").unwrap(),
            Duration::from_micros(99_999_999)
        );
        assert_eq!(parse("10n").unwrap(), Duration::from_nanos(10));
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in ["", "S", "5", "123456789S", "5s", "-5S", "5 S", "1.5S"] {
            assert_eq!(parse(bad).unwrap_err().code, Code::Internal, "{bad:?}");
        }
    }
}
