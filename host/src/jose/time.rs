//! The time rules of JWT claims (`exp`, `nbf`, `iat`, maximum lifetime),
//! the same for gateway and OIDC tokens, and the clock they are checked
//! against.

/// Why a token's times are not acceptable now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Past `exp` plus leeway.
    #[error("token expired")]
    Expired,
    /// Before `nbf` minus leeway.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` in the future beyond leeway.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `exp - iat` (or `exp - now` without `iat`) above the maximum.
    #[error("token lifetime exceeds the maximum")]
    LifetimeTooLong,
}

/// Checks `exp`, `nbf` and `iat` (Unix seconds) against `now` with
/// `leeway` seconds of clock skew, and the lifetime against
/// `max_lifetime` (0 = no maximum).
pub(crate) fn check_times(
    exp: i64,
    nbf: Option<i64>,
    iat: Option<i64>,
    now: i64,
    leeway: i64,
    max_lifetime: i64,
) -> Result<(), TimeError> {
    if now > exp.saturating_add(leeway) {
        return Err(TimeError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(TimeError::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(TimeError::IssuedInFuture);
    }
    // Without `iat`, the remaining lifetime from now is bounded instead.
    if max_lifetime > 0 && exp.saturating_sub(iat.unwrap_or(now)) > max_lifetime {
        return Err(TimeError::LifetimeTooLong);
    }
    Ok(())
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_rules_apply_the_leeway_and_the_maximum_lifetime() {
        let now = 1_000;
        assert_eq!(check_times(now + 10, None, None, now, 0, 0), Ok(()));
        assert_eq!(check_times(now - 5, None, None, now, 5, 0), Ok(()), "inside leeway");
        assert_eq!(check_times(now - 6, None, None, now, 5, 0), Err(TimeError::Expired));
        assert_eq!(check_times(now + 10, Some(now + 6), None, now, 5, 0), Err(TimeError::NotYetValid));
        assert_eq!(check_times(now + 10, None, Some(now + 6), now, 5, 0), Err(TimeError::IssuedInFuture));
        assert_eq!(check_times(now + 100, None, Some(now), now, 0, 60), Err(TimeError::LifetimeTooLong));
        assert_eq!(check_times(now + 100, None, None, now, 0, 60), Err(TimeError::LifetimeTooLong), "from now");
        assert_eq!(check_times(i64::MAX, None, None, i64::MAX, i64::MAX, 0), Ok(()), "no overflow");
        assert!(now_unix() > 1_600_000_000);
    }
}
