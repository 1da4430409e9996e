//! Plans: the pure value `diff(desired, observed)` produces, and its renderings.
