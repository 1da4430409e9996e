//! Checking a downloaded apt signing key against the fingerprint sovereign pins, without
//! gpg: walk the OpenPGP packets (RFC 4880 framing), require exactly one primary public
//! key, and compute its v4 fingerprint (SHA-1 over 0x99, the body's length and the body).
//! A second primary key in the file is refused: apt would trust it too.

use sha1::{Digest, Sha1};

/// The most a keyring file may hold; Tailscale's is about 2 KiB.
pub const MAX_KEYRING: usize = 64 * 1024;
const MAX_PACKETS: usize = 256;
const TAG_PUBLIC_KEY: u8 = 6;

/// The v4 fingerprint (40 upper-case hex digits) of the one primary key in `bytes`, a
/// binary ("noarmor") keyring.
pub fn primary_fingerprint(bytes: &[u8]) -> Result<String, String> {
    if bytes.len() > MAX_KEYRING {
        return Err(format!(
            "the keyring is {} bytes, more than the {MAX_KEYRING} allowed",
            bytes.len()
        ));
    }
    let mut at = 0;
    let mut primaries = Vec::new();
    let mut packets = 0;
    while at < bytes.len() {
        packets += 1;
        if packets > MAX_PACKETS {
            return Err(format!("the keyring holds more than {MAX_PACKETS} packets"));
        }
        let (tag, header, len) = header(&bytes[at..])?;
        let start = at + header;
        let end = start
            .checked_add(len)
            .filter(|e| *e <= bytes.len())
            .ok_or("a packet runs past the end of the file")?;
        if tag == TAG_PUBLIC_KEY {
            primaries.push(&bytes[start..end]);
        }
        at = end;
    }
    let [body] = primaries.as_slice() else {
        return Err(format!(
            "the keyring holds {} primary keys, not one",
            primaries.len()
        ));
    };
    if body.first() != Some(&4) {
        return Err(format!(
            "the primary key is version {:?}, not 4",
            body.first()
        ));
    }
    let len = u16::try_from(body.len()).map_err(|_| "the primary key is too long")?;
    let mut hash = Sha1::new();
    hash.update([0x99]);
    hash.update(len.to_be_bytes());
    hash.update(body);
    Ok(hex::encode_upper(hash.finalize()))
}

/// (tag, header length, body length) of the packet at the start of `b`.
fn header(b: &[u8]) -> Result<(u8, usize, usize), String> {
    let first = *b.first().ok_or("empty packet")?;
    if first & 0x80 == 0 {
        return Err("not an OpenPGP packet (is the key ASCII-armored?)".into());
    }
    let byte = |i: usize| {
        b.get(i)
            .copied()
            .map(usize::from)
            .ok_or("a packet header is cut short")
    };
    if first & 0x40 != 0 {
        // New format.
        let tag = first & 0x3f;
        let o1 = byte(1)?;
        return match o1 {
            0..=191 => Ok((tag, 2, o1)),
            192..=223 => Ok((tag, 3, ((o1 - 192) << 8) + byte(2)? + 192)),
            255 => Ok((
                tag,
                6,
                (byte(2)? << 24) | (byte(3)? << 16) | (byte(4)? << 8) | byte(5)?,
            )),
            _ => Err("a partial-length packet, which no key packet may be".into()),
        };
    }
    // Old format.
    let tag = (first >> 2) & 0x0f;
    match first & 0x03 {
        0 => Ok((tag, 2, byte(1)?)),
        1 => Ok((tag, 3, (byte(1)? << 8) | byte(2)?)),
        2 => Ok((
            tag,
            5,
            (byte(1)? << 24) | (byte(2)? << 16) | (byte(3)? << 8) | byte(4)?,
        )),
        _ => Err("a packet of indeterminate length".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Keys made for these tests with gpg (`--quick-gen-key`, ed25519), and the
    // fingerprints gpg printed for them.
    const ONE: &[u8] = include_bytes!("testdata/one-key.gpg");
    const TWO: &[u8] = include_bytes!("testdata/two-keys.gpg");
    const ARMORED: &[u8] = include_bytes!("testdata/one-key.asc");

    #[test]
    fn the_fingerprint_is_the_one_gpg_prints() {
        assert_eq!(
            primary_fingerprint(ONE).unwrap(),
            "51BB8CC71C057A8F1CE618A0F1C7D816DCDEC9F7"
        );
    }

    #[test]
    fn a_second_key_an_armored_file_and_cut_bytes_are_refused() {
        assert!(
            primary_fingerprint(TWO)
                .unwrap_err()
                .contains("2 primary keys")
        );
        assert!(
            primary_fingerprint(ARMORED)
                .unwrap_err()
                .contains("armored")
        );
        for cut in [1, 10, ONE.len() - 1] {
            assert!(primary_fingerprint(&ONE[..cut]).is_err(), "cut at {cut}");
        }
        assert!(primary_fingerprint(&vec![0x99; MAX_KEYRING + 1]).is_err());
    }
}
