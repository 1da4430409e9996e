//! Execution order: a stable topological sort of changes by their `depends_on`.

use std::collections::{BTreeMap, BTreeSet};

use super::{Address, Change};

/// Order `changes` so that every change comes after the ones it depends on; otherwise the
/// input order is kept (domains emit changes in a sensible order already). Dependencies on
/// addresses that have no change are satisfied. A cycle is broken by input order, which
/// keeps planning total; domains never declare cycles.
pub fn by_dependencies(changes: Vec<Change>) -> Vec<Change> {
    let index: BTreeMap<Address, usize> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.address.clone(), i))
        .collect();
    let mut placed = vec![false; changes.len()];
    let mut order = Vec::with_capacity(changes.len());
    let mut visiting = BTreeSet::new();
    for i in 0..changes.len() {
        visit(i, &changes, &index, &mut placed, &mut visiting, &mut order);
    }
    let mut slots: Vec<Option<Change>> = changes.into_iter().map(Some).collect();
    order
        .into_iter()
        .map(|i| slots[i].take().expect("each index placed once"))
        .collect()
}

fn visit(
    i: usize,
    changes: &[Change],
    index: &BTreeMap<Address, usize>,
    placed: &mut [bool],
    visiting: &mut BTreeSet<usize>,
    order: &mut Vec<usize>,
) {
    if placed[i] || !visiting.insert(i) {
        return;
    }
    for dep in &changes[i].depends_on {
        if let Some(&j) = index.get(dep) {
            visit(j, changes, index, placed, visiting, order);
        }
    }
    visiting.remove(&i);
    if !placed[i] {
        placed[i] = true;
        order.push(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Action;

    fn change(name: &str, deps: &[&str]) -> Change {
        let mut c = Change::new(Address::new("t", "r", name), Action::Create);
        c.depends_on = deps.iter().map(|d| Address::new("t", "r", *d)).collect();
        c
    }

    fn names(cs: &[Change]) -> Vec<&str> {
        cs.iter().map(|c| c.address.name.as_str()).collect()
    }

    #[test]
    fn dependencies_come_first_and_input_order_is_kept_otherwise() {
        let out = by_dependencies(vec![
            change("dataset", &["pool"]),
            change("other", &[]),
            change("pool", &[]),
        ]);
        assert_eq!(names(&out), ["pool", "dataset", "other"]);
    }

    #[test]
    fn a_cycle_still_yields_every_change_once() {
        let out = by_dependencies(vec![change("a", &["b"]), change("b", &["a"])]);
        assert_eq!(out.len(), 2);
    }
}
