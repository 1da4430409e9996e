//! Turning generated token bytes into streamed text: whole UTF-8 characters only, invalid
//! bytes as U+FFFD, and stop strings that may span tokens held back until they are decided.

/// Decodes a byte stream into text incrementally without splitting characters.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    /// Bytes of a character that is not complete yet (at most 3).
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Feed bytes; returns the text of every character completed so far. Bytes that can
    /// never start or continue a valid character become U+FFFD, one per maximal invalid run
    /// as `String::from_utf8_lossy` does.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &bad[n..];
                        }
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// End of stream: an incomplete character left over becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        if self.pending.is_empty() {
            String::new()
        } else {
            self.pending.clear();
            "\u{FFFD}".into()
        }
    }
}

/// What the stop-string filter says after new text.
#[derive(Debug, PartialEq, Eq)]
pub enum StopScan {
    /// Text safe to send now; more may follow.
    Continue(String),
    /// A stop string matched: send this text (everything before the match) and finish.
    Stopped(String),
}

/// Holds back text that could be the start of a stop string, across token boundaries.
#[derive(Debug)]
pub struct StopFilter {
    /// The stop strings of the request (non-empty strings only).
    stops: Vec<String>,
    /// Text received but not yet released because a stop string may begin in it.
    held: String,
}

impl StopFilter {
    pub fn new(stops: Vec<String>) -> Self {
        StopFilter {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Add text; returns what can be released.
    pub fn push(&mut self, text: &str) -> StopScan {
        self.held.push_str(text);
        // The earliest complete match wins.
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first {
            let out = self.held[..at].to_string();
            self.held.clear();
            return StopScan::Stopped(out);
        }
        // Keep the longest suffix of `held` that is a proper prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        StopScan::Continue(out)
    }

    /// End of generation: whatever was held back is text after all.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length in bytes of the longest suffix of `text` that is a proper prefix of `stop`,
/// measured on character boundaries.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = stop.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| {
            let start = text.len() - n;
            text.is_char_boundary(start) && stop.is_char_boundary(n) && text[start..] == stop[..n]
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multibyte_characters_are_never_split() {
        let mut s = Utf8Stream::default();
        let bytes = "é€😀".as_bytes();
        let mut out = String::new();
        for b in bytes {
            let part = s.push(&[*b]);
            // Every released part is whole characters.
            assert!(part.chars().all(|c| c != '\u{FFFD}'));
            out.push_str(&part);
        }
        out.push_str(&s.finish());
        assert_eq!(out, "é€😀");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut s = Utf8Stream::default();
        let mut out = s.push(b"a\xff");
        out.push_str(&s.push(b"b\xe2\x82"));
        out.push_str(&s.push(b"c"));
        out.push_str(&s.push(b"\xf0\x9f"));
        out.push_str(&s.finish());
        assert_eq!(out, "a\u{FFFD}b\u{FFFD}c\u{FFFD}");
    }

    #[test]
    fn stop_string_spanning_pushes_is_caught_and_prefix_held() {
        let mut f = StopFilter::new(vec!["END".into()]);
        assert_eq!(f.push("abc E"), StopScan::Continue("abc ".into()));
        assert_eq!(f.push("N"), StopScan::Continue(String::new()));
        assert_eq!(f.push("Dxyz"), StopScan::Stopped(String::new()));
    }

    #[test]
    fn false_start_is_released() {
        let mut f = StopFilter::new(vec!["END".into()]);
        assert_eq!(f.push("EN"), StopScan::Continue(String::new()));
        assert_eq!(f.push("X"), StopScan::Continue("ENX".into()));
        assert_eq!(f.push("E"), StopScan::Continue(String::new()));
        assert_eq!(f.finish(), "E");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let mut f = StopFilter::new(vec!["world".into(), "lo".into()]);
        assert_eq!(f.push("hello world"), StopScan::Stopped("hel".into()));
    }

    #[test]
    fn no_stops_releases_everything() {
        let mut f = StopFilter::new(vec![]);
        assert_eq!(f.push("héllo"), StopScan::Continue("héllo".into()));
    }
}
