//! "Did you mean" suggestions by optimal string alignment distance, which counts a swap of
//! two adjacent letters as one edit ("recrodsize" is one edit from "recordsize").

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::osa_distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ` (did you mean "x"?)`, or nothing.
pub fn suffix<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(word, candidates)
        .map(|c| format!(" (did you mean \"{c}\"?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swap_of_adjacent_letters_is_one_edit() {
        assert_eq!(strsim::osa_distance("recrodsize", "recordsize"), 1);
        assert_eq!(strsim::osa_distance("datsets", "datasets"), 1);
        assert_eq!(strsim::levenshtein("recrodsize", "recordsize"), 2);
    }

    #[test]
    fn suggests_the_closest_known_key() {
        let keys = ["pools", "datasets", "zvols", "snapshot_policies"];
        assert_eq!(did_you_mean("datsets", keys), Some("datasets"));
        assert_eq!(did_you_mean("zovls", keys), Some("zvols"));
        assert_eq!(did_you_mean("Pools", keys), Some("pools"));
        assert_eq!(
            did_you_mean("snapshot_polices", keys),
            Some("snapshot_policies")
        );
    }

    #[test]
    fn does_not_suggest_unrelated_words() {
        let keys = ["pools", "datasets", "zvols"];
        assert_eq!(did_you_mean("network", keys), None);
        assert_eq!(did_you_mean("x", ["y", "abc"]), Some("y"));
        assert_eq!(suffix("network", keys), "");
        assert_eq!(suffix("pols", keys), " (did you mean \"pools\"?)");
    }
}
