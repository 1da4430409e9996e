//! Deterministic mutations of a GGUF file: bit flips, interesting values written over
//! length and count fields, truncations, splices. Shared by the fuzzer binary and the
//! bounded fuzz test in the suite.

/// A small deterministic generator (xorshift64*): the same seed gives the same mutants.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Values that sit on the parser's boundaries: zero, one, limits, the file's length.
fn interesting_u64(rng: &mut Rng, len: usize) -> u64 {
    let len = len as u64;
    let table = [
        0,
        1,
        2,
        3,
        4,
        13,
        32,
        63,
        64,
        65_535,
        65_536,
        1 << 16,
        1 << 20,
        (1 << 20) + 1,
        1 << 24,
        (1 << 24) + 1,
        1 << 32,
        (1 << 32) - 1,
        1 << 63,
        i64::MAX as u64,
        u64::MAX,
        u64::MAX - 1,
        len,
        len.wrapping_add(1),
        len.wrapping_sub(1),
        len / 2,
    ];
    table[rng.below(table.len())]
}

fn interesting_u32(rng: &mut Rng) -> u32 {
    let table = [
        0,
        1,
        2,
        3,
        4,
        5,
        7,
        8,
        9,
        10,
        12,
        13,
        30,
        31,
        39,
        40,
        255,
        u32::MAX,
        1 << 31,
    ];
    table[rng.below(table.len())]
}

/// One mutation of `data`, in place.
pub fn mutate_once(data: &mut Vec<u8>, rng: &mut Rng) {
    let len = data.len();
    match rng.below(9) {
        0 => {
            if len > 0 {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
        }
        1 => {
            if len > 0 {
                let i = rng.below(len);
                data[i] = [0u8, 1, 0x7F, 0x80, 0xFF][rng.below(5)];
            }
        }
        2 => {
            let at = rng.below(len + 1);
            data.truncate(at);
        }
        3 | 4 => {
            // A u64 field: counts, lengths, dimensions, offsets.
            if len >= 8 {
                let at = rng.below(len - 7);
                let v = interesting_u64(rng, len).to_le_bytes();
                data[at..at + 8].copy_from_slice(&v);
            }
        }
        5 => {
            // A u32 field: versions, value types, tensor types, dimension counts.
            if len >= 4 {
                let at = rng.below(len - 3);
                data[at..at + 4].copy_from_slice(&interesting_u32(rng).to_le_bytes());
            }
        }
        6 => {
            // Remove a run of bytes.
            if len > 0 {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                data.drain(at..at + n);
            }
        }
        7 => {
            // Duplicate a run of bytes in place.
            if len > 0 {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                let copy: Vec<u8> = data[at..at + n].to_vec();
                let to = rng.below(len + 1);
                data.splice(to..to, copy);
            }
        }
        _ => {
            // Insert random bytes.
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            data.splice(at..at, bytes);
        }
    }
}

/// A mutant of `seed`: one to four stacked mutations.
pub fn mutant(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(4) {
        mutate_once(&mut data, rng);
    }
    data
}
