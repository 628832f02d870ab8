//! The `grpc-timeout` request header: 1 to 8 digits and a unit (H, M, S, m, u, n). Sans-IO.
//! Anything else is rejected; the longest value (99999999H, about 11 000 years) still fits a
//! [`Duration`] and a deadline.

use std::time::Duration;

use super::status::{Code, Status};

/// Most digits a `grpc-timeout` may have.
const MAX_DIGITS: usize = 8;

/// Parses a `grpc-timeout` value.
pub fn parse(value: &str) -> Result<Duration, Status> {
    let malformed = || {
        Status::new(
            Code::Internal,
            format!("malformed grpc-timeout \"{value}\""),
        )
    };
    let Some((&unit, digits)) = value.as_bytes().split_last() else {
        return Err(malformed());
    };
    if digits.is_empty() || digits.len() > MAX_DIGITS || !digits.iter().all(u8::is_ascii_digit) {
        return Err(malformed());
    }
    // At most 8 digits: no overflow, here or in the unit's multiplication below.
    let amount = digits
        .iter()
        .fold(0u64, |amount, digit| amount * 10 + u64::from(digit - b'0'));
    Ok(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return Err(malformed()),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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
        assert_eq!(
            parse("99999999H").unwrap(),
            Duration::from_secs(99_999_999 * 3600)
        );
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "S",
            "5",
            "123456789S",
            "5s",
            "-5S",
            "5 S",
            "1.5S",
            "+5S",
            "1é",
            "é",
            "5\u{0}",
        ] {
            assert_eq!(parse(bad).unwrap_err().code, Code::Internal, "{bad:?}");
        }
    }

    proptest! {
        /// Any text: no panic; accepted exactly when it is 1-8 ASCII digits and a unit, and then
        /// it means that many units.
        #[test]
        fn any_text_is_parsed_or_rejected(value in any::<String>()) {
            let well_formed = value.len() >= 2
                && value.len() <= MAX_DIGITS + 1
                && value.bytes().rev().skip(1).all(|b| b.is_ascii_digit())
                && value.ends_with(['H', 'M', 'S', 'm', 'u', 'n']);
            prop_assert_eq!(parse(&value).is_ok(), well_formed, "{:?}", value);
        }

        #[test]
        fn every_amount_and_unit_means_what_it_says(amount in 0u64..100_000_000, unit in 0..6usize) {
            let (letter, nanos_per_unit) = [
                ('H', 3_600_000_000_000u128),
                ('M', 60_000_000_000),
                ('S', 1_000_000_000),
                ('m', 1_000_000),
                ('u', 1_000),
                ('n', 1),
            ][unit];
            let parsed = parse(&format!("{amount}{letter}")).unwrap();
            prop_assert_eq!(parsed.as_nanos(), u128::from(amount) * nanos_per_unit);
            // Zero-padded forms of the same amount mean the same, up to 8 digits.
            let padded = format!("{amount:08}{letter}");
            prop_assert_eq!(parse(&padded).unwrap(), parsed);
        }

        /// Digit strings and units mixed with arbitrary bytes: no panic whatever the split.
        #[test]
        fn near_misses_never_panic(value in "[0-9HMSmun é+.-]{0,12}") {
            let _ = parse(&value);
        }
    }
}
