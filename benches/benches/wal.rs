//! WAL append + sync benchmark (placeholder: not written yet).
fn main() {}
