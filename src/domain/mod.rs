//! The domain interface: the one shape every domain (files, storage, ...) plugs in with.
