//! NixOS-style merging of profile trees.
//!
//! Tables merge key by key, recursively. A file's own values override what it imports
//! ([`override_with`]). Files imported side by side are siblings: they merge without
//! precedence, so a leaf they set to different values is a [`Conflict`]
//! ([`merge_siblings`]) unless the importing file settles it. Arrays are leaves: an
//! array replaces another, it never concatenates.

use super::tree::{Kind, Node, Seg};

/// Two sibling imports set the same key to different values.
#[derive(Debug, Clone)]
pub struct Conflict {
    /// The key path, as segments.
    pub path: Vec<Seg>,
    /// The value that was merged first and where it was written.
    pub first: Node,
    /// The value that disagrees with it.
    pub second: Node,
}

/// Put `over` (the importing file's tree) on top of `base` (what it imports): tables merge
/// recursively and every other value of `over` replaces the one in `base`.
pub fn override_with(base: &mut Node, over: Node) {
    match (&mut base.kind, over.kind) {
        (Kind::Table(base_table), Kind::Table(over_table)) => {
            for (key, entry) in over_table {
                match base_table.get_mut(&key) {
                    Some(existing)
                        if existing.node.table().is_some() && entry.node.table().is_some() =>
                    {
                        // The importing file's key location wins: it is where the table is
                        // last opened.
                        existing.key_loc = entry.key_loc;
                        override_with(&mut existing.node, entry.node);
                    }
                    Some(existing) => *existing = entry,
                    None => {
                        base_table.insert(key, entry);
                    }
                }
            }
        }
        (_, kind) => {
            *base = Node {
                kind,
                loc: over.loc,
            }
        }
    }
}

/// Merge sibling `next` into `acc` (both imported by the same file). Equal values agree;
/// different leaves, or a table against a leaf, are pushed to `conflicts` and `acc` keeps
/// its value.
pub fn merge_siblings(
    acc: &mut Node,
    next: Node,
    path: &mut Vec<Seg>,
    conflicts: &mut Vec<Conflict>,
) {
    match (&mut acc.kind, next.kind) {
        (Kind::Table(acc_table), Kind::Table(next_table)) => {
            for (key, entry) in next_table {
                match acc_table.get_mut(&key) {
                    Some(existing) => {
                        path.push(Seg::Key(key));
                        merge_siblings(&mut existing.node, entry.node, path, conflicts);
                        path.pop();
                    }
                    None => {
                        acc_table.insert(key, entry);
                    }
                }
            }
        }
        (_, kind) => {
            let next = Node {
                kind,
                loc: next.loc,
            };
            if !acc.same_value(&next) {
                conflicts.push(Conflict {
                    path: path.clone(),
                    first: acc.clone(),
                    second: next,
                });
            }
        }
    }
}

/// Whether the importing file's own tree sets a leaf at `path` or above it, which settles
/// a conflict between its imports.
pub fn settles(own: &Node, path: &[Seg]) -> bool {
    let mut node = own;
    for seg in path {
        match (&node.kind, seg) {
            (Kind::Table(t), Seg::Key(k)) => match t.get(k) {
                Some(entry) => node = &entry.node,
                None => return false,
            },
            _ => return true,
        }
    }
    node.table().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tree::{from_document, key_path};
    use toml::de::DeTable;

    fn tree(file: usize, text: &str) -> Node {
        let (doc, errors) = DeTable::parse_recoverable(text);
        assert!(errors.is_empty(), "{errors:?}");
        from_document(&doc, file, &mut Vec::new())
    }

    #[test]
    fn tables_merge_recursively_and_the_importer_wins() {
        let mut base = tree(1, "[a]\nx = 1\ny = 2\n[b]\nz = [1, 2]\n");
        override_with(&mut base, tree(0, "[a]\ny = 3\n[b]\nz = [9]\n"));
        let json = base.to_json();
        assert_eq!(
            json,
            serde_json::json!({"a": {"x": 1, "y": 3}, "b": {"z": [9]}})
        );
        // Origins stay per value: x from the import, y from the importer.
        assert_eq!(base.get_path(&["a", "x"]).unwrap().node.loc.file, 1);
        assert_eq!(base.get_path(&["a", "y"]).unwrap().node.loc.file, 0);
    }

    #[test]
    fn arrays_replace_and_never_concatenate() {
        let mut base = tree(1, "tags = [\"a\", \"b\"]\n");
        override_with(&mut base, tree(0, "tags = [\"c\"]\n"));
        assert_eq!(base.to_json(), serde_json::json!({"tags": ["c"]}));
    }

    #[test]
    fn a_leaf_of_the_importer_replaces_a_whole_table() {
        let mut base = tree(1, "[a]\nx = 1\n");
        override_with(&mut base, tree(0, "a = \"flat\"\n"));
        assert_eq!(base.to_json(), serde_json::json!({"a": "flat"}));
    }

    #[test]
    fn siblings_that_agree_merge_and_siblings_that_differ_conflict() {
        let mut acc = tree(1, "[p]\nx = 1\ny = \"same\"\n");
        let mut conflicts = Vec::new();
        merge_siblings(
            &mut acc,
            tree(2, "[p]\nx = 2\ny = \"same\"\nz = true\n"),
            &mut Vec::new(),
            &mut conflicts,
        );
        assert_eq!(conflicts.len(), 1);
        assert_eq!(key_path(&conflicts[0].path), "p.x");
        assert_eq!(conflicts[0].first.loc.file, 1);
        assert_eq!(conflicts[0].second.loc.file, 2);
        // The first value stays; the agreeing and new keys are merged.
        assert_eq!(
            acc.to_json(),
            serde_json::json!({"p": {"x": 1, "y": "same", "z": true}})
        );
    }

    #[test]
    fn sibling_arrays_conflict_unless_equal() {
        let mut acc = tree(1, "a = [1, 2]\nb = [3]\n");
        let mut conflicts = Vec::new();
        merge_siblings(
            &mut acc,
            tree(2, "a = [1, 2]\nb = [3, 4]\n"),
            &mut Vec::new(),
            &mut conflicts,
        );
        assert_eq!(conflicts.len(), 1);
        assert_eq!(key_path(&conflicts[0].path), "b");
    }

    #[test]
    fn a_table_against_a_leaf_is_a_conflict() {
        let mut acc = tree(1, "[a]\nx = 1\n");
        let mut conflicts = Vec::new();
        merge_siblings(
            &mut acc,
            tree(2, "a = 5\n"),
            &mut Vec::new(),
            &mut conflicts,
        );
        assert_eq!(conflicts.len(), 1);
        assert_eq!(key_path(&conflicts[0].path), "a");
    }

    #[test]
    fn the_importer_settles_conflicts_at_or_above_the_key() {
        let own = tree(0, "[p]\nx = 3\n[q]\nother = 1\nr = 1\n");
        let path = |p: &[&str]| {
            p.iter()
                .map(|k| Seg::Key(k.to_string()))
                .collect::<Vec<_>>()
        };
        assert!(settles(&own, &path(&["p", "x"])));
        assert!(!settles(&own, &path(&["p", "y"])));
        assert!(!settles(&own, &path(&["q"])));
        assert!(settles(&own, &path(&["q", "r", "deeper"])));
    }
}
