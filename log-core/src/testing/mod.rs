//! Reference models of the state machines and their drivers, shared by the
//! model-based tests of this crate and the fuzz targets of `keel-fuzz`.
//! Compiled only with the `testing` feature.

pub mod metadata_model;
pub mod partition_model;

use arbitrary::{Arbitrary, Unstructured};

/// Decodes as many operations as the fuzzer's bytes hold. (bolero's
/// `with_arbitrary` generates no cases for enum vectors, so the bytes are
/// decoded here; every byte string gives some sequence.)
pub fn ops<'a, T: Arbitrary<'a>>(bytes: &'a [u8]) -> Vec<T> {
    let mut u = Unstructured::new(bytes);
    let mut ops = Vec::new();
    while let Ok(op) = u.arbitrary() {
        ops.push(op);
        if u.is_empty() {
            break;
        }
    }
    ops
}
