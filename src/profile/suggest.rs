//! "Did you mean" suggestions by optimal string alignment distance, which counts a swap of
//! two adjacent letters as one edit ("recrodsize" is one edit from "recordsize").

/// The candidate closest to `word`, if it is close enough to be a likely typo, else one
/// that is the same name in another spelling: an abbreviation or a shortened form (`ctx`
/// for `context`, `api_key` for `api_key_file`, and the other way round).
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let candidates: Vec<&'a str> = candidates.into_iter().collect();
    let limit = (word.chars().count() / 3).max(1);
    let lower = word.to_lowercase();
    let typo = candidates
        .iter()
        .map(|c| (strsim::osa_distance(&lower, &c.to_lowercase()), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    typo.or_else(|| {
        candidates
            .iter()
            .filter(|c| other_spelling(&lower, &c.to_lowercase()))
            .min_by_key(|c| c.len().abs_diff(word.len()))
            .copied()
    })
}

/// One name is the other abbreviated: the same first letter, and the shorter one's letters
/// appear in order in the longer (`ctx` in `context`, `api_key` in `api_key_file`). Three
/// letters at least, so that single letters do not match everything.
fn other_spelling(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.chars().count() < 3 || short == long || short.chars().next() != long.chars().next() {
        return false;
    }
    let mut rest = long.chars();
    short.chars().all(|c| rest.any(|l| l == c))
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
    fn suggests_the_same_name_in_another_spelling() {
        let inference = [
            "listen",
            "api_key_file",
            "slots",
            "ctx",
            "threads",
            "models",
        ];
        assert_eq!(did_you_mean("context", inference), Some("ctx"));
        assert_eq!(did_you_mean("api_key", inference), Some("api_key_file"));
        let model = [
            "source",
            "sha256",
            "context",
            "gpu_layers",
            "ttl",
            "preload",
        ];
        assert_eq!(did_you_mean("ctx", model), Some("context"));
        assert_eq!(did_you_mean("gpu", model), Some("gpu_layers"));
        assert_eq!(did_you_mean("memory", model), None);
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
