//! The files domain: managed files under `--root`.
