//! Secrets: `<prefix>_<30 base62 random characters><6 base62 checksum characters>`.
//!
//! As GitHub's tokens do, the checksum (CRC32 of everything before it) lets a
//! mistyped or made-up credential be rejected as `MALFORMED` without touching the
//! index, and lets secret scanners recognise ours. The 30 random characters carry
//! 178 bits from the system CSPRNG (through aws-lc-rs). Only the SHA-256 of a secret is ever stored.

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Random characters in a secret.
pub const RANDOM_LEN: usize = 30;
/// Checksum characters at the end of a secret (62^6 > 2^32).
pub const CHECKSUM_LEN: usize = 6;
/// Longest prefix accepted.
pub const MAX_PREFIX_LEN: usize = 32;
/// Characters of the random part kept in `start` for display.
const START_RANDOM_CHARS: usize = 4;

/// A freshly generated secret: shown to its owner once, then only its hash remains.
pub struct NewSecret {
    /// The full secret.
    pub plaintext: String,
    /// SHA-256 of `plaintext`.
    pub hash: [u8; 32],
    /// `<prefix>_` and the first random characters, for display in lists.
    pub start: String,
}

/// Checks that a prefix can be used: 1 to 32 ASCII letters, digits, `-` or `_`.
pub fn validate_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
        return Err("prefix must be 1 to 32 characters");
    }
    if !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err("prefix may contain only ASCII letters, digits, '-' and '_'");
    }
    Ok(())
}

/// Generates a secret with the given (already validated) prefix.
pub fn generate(rng: &SystemRandom, prefix: &str) -> NewSecret {
    let mut plaintext = String::with_capacity(prefix.len() + 1 + RANDOM_LEN + CHECKSUM_LEN);
    plaintext.push_str(prefix);
    plaintext.push('_');
    let mut filled = 0;
    let mut buf = [0u8; 64];
    while filled < RANDOM_LEN {
        // The operating system's CSPRNG does not fail on Linux once booted; if it
        // ever does, nothing can be issued safely, so stopping is the right answer.
        rng.fill(&mut buf).expect("the system CSPRNG failed");
        for &b in &buf {
            // Rejection sampling: 248 = 4 * 62, so `b % 62` is uniform below it.
            if b < 248 && filled < RANDOM_LEN {
                plaintext.push(BASE62[(b % 62) as usize] as char);
                filled += 1;
            }
        }
    }
    let sum = crc32fast::hash(plaintext.as_bytes());
    plaintext.extend(checksum_chars(sum).map(char::from));
    let start = plaintext[..prefix.len() + 1 + START_RANDOM_CHARS].to_owned();
    NewSecret { hash: sha256(plaintext.as_bytes()), start, plaintext }
}

/// The prefix of `secret` if it has the shape of a tollgate secret (a valid
/// prefix, `_`, 36 ASCII letters and digits), whatever its checksum.
pub fn shape_prefix(secret: &str) -> Option<&str> {
    let bytes = secret.as_bytes();
    let body_len = RANDOM_LEN + CHECKSUM_LEN;
    if bytes.len() < body_len + 2 || bytes.len() > MAX_PREFIX_LEN + 1 + body_len {
        return None;
    }
    let split = bytes.len() - body_len;
    if bytes[split - 1] != b'_' || validate_prefix(&secret[..split - 1]).is_err() {
        return None;
    }
    if !bytes[split..].iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    Some(&secret[..split - 1])
}

/// Returns the SHA-256 of a secret if it is well formed (shape and checksum),
/// `None` otherwise. This is the hot path's first step.
pub fn parse(secret: &str) -> Option<[u8; 32]> {
    shape_prefix(secret)?;
    let bytes = secret.as_bytes();
    let expected = checksum_chars(crc32fast::hash(&bytes[..bytes.len() - CHECKSUM_LEN]));
    if expected != bytes[bytes.len() - CHECKSUM_LEN..] {
        return None;
    }
    Some(sha256(bytes))
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Generates an opaque identifier: `prefix` then 20 base62 characters (119 bits).
pub fn new_id(rng: &SystemRandom, prefix: &str) -> String {
    let s = generate(rng, "x");
    format!("{prefix}{}", &s.plaintext[2..22])
}

/// Generates an identifier that sorts by creation time: `prefix`, `now_ms`
/// as 8 base62 characters (in order until the year 8900), then 12 random ones
/// (71 bits): 20 characters, like [`new_id`]'s. Records made one after the
/// other sit side by side in the store's ordered tree, so a bulk import
/// rewrites a few of its leaves instead of one per record.
pub fn new_timed_id(rng: &SystemRandom, prefix: &str, now_ms: u64) -> String {
    let mut time = [b'0'; 8];
    let mut t = now_ms;
    for slot in time.iter_mut().rev() {
        *slot = BASE62[(t % 62) as usize];
        t /= 62;
    }
    let s = generate(rng, "x");
    format!("{prefix}{}{}", std::str::from_utf8(&time).unwrap_or("00000000"), &s.plaintext[2..14])
}

/// Generates a random (version 4) UUID, as seed 004 uses for access tokens.
pub fn new_uuid(rng: &SystemRandom) -> String {
    let mut b = [0u8; 16];
    rng.fill(&mut b).expect("the system CSPRNG failed");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The checksum's base62 digits (ASCII), most significant first.
fn checksum_chars(mut sum: u32) -> [u8; CHECKSUM_LEN] {
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(sum % 62) as usize];
        sum /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_ids_sort_by_time_and_look_like_ids() {
        let rng = SystemRandom::new();
        let now = 1_764_547_200_000; // 2025-12-01
        let ids: Vec<String> = [now, now + 1, now + 61, now + 86_400_000, 253_402_300_799_999]
            .iter()
            .map(|t| new_timed_id(&rng, "key_", *t))
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        for id in &ids {
            assert_eq!(id.len(), new_id(&rng, "key_").len());
            assert!(id["key_".len()..].bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        }
        let same: std::collections::HashSet<String> = (0..1000).map(|_| new_timed_id(&rng, "k", now)).collect();
        assert_eq!(same.len(), 1000, "the random part tells apart ids of one millisecond");
    }

    #[test]
    fn generated_secrets_parse_to_their_hash() {
        let rng = SystemRandom::new();
        for prefix in ["tg", "my_app", "a", "x-y-z"] {
            let s = generate(&rng, prefix);
            assert_eq!(parse(&s.plaintext), Some(s.hash));
            assert!(s.plaintext.starts_with(&s.start));
            assert_eq!(s.plaintext.len(), prefix.len() + 1 + RANDOM_LEN + CHECKSUM_LEN);
        }
    }

    #[test]
    fn any_single_character_change_is_malformed() {
        let rng = SystemRandom::new();
        let s = generate(&rng, "tg").plaintext;
        let mut bytes = s.clone().into_bytes();
        for i in 3..bytes.len() {
            let orig = bytes[i];
            bytes[i] = if orig == b'a' { b'b' } else { b'a' };
            let mutated = std::str::from_utf8(&bytes).unwrap();
            assert_eq!(parse(mutated), None, "mutation at {i} of {s} accepted");
            bytes[i] = orig;
        }
    }

    #[test]
    fn garbage_is_malformed() {
        for s in
            ["", "_", "tg_", "tg_short", &"a".repeat(5000), "tg_ééééééééééééééééééééééééééééééééééé", "eyJhbGciOi.x.y"]
        {
            assert_eq!(parse(s), None);
        }
    }

    #[test]
    fn secrets_are_distinct_and_uniformish() {
        let rng = SystemRandom::new();
        let mut seen = std::collections::HashSet::new();
        let mut counts = [0u32; 62];
        for _ in 0..2000 {
            let s = generate(&rng, "tg").plaintext;
            for b in s[3..3 + RANDOM_LEN].bytes() {
                counts[BASE62.iter().position(|&c| c == b).unwrap()] += 1;
            }
            assert!(seen.insert(s));
        }
        // 60,000 draws, 62 symbols: about 968 each; a biased generator strays far.
        assert!(counts.iter().all(|&c| (800..1150).contains(&c)), "{counts:?}");
    }

    #[test]
    fn uuid_shape() {
        let u = new_uuid(&SystemRandom::new());
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
