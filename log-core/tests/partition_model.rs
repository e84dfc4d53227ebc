//! Model-based test of the partition log machine against the reference model
//! in `log_core::testing::partition_model` (random operation sequences,
//! compared after every step). `MODEL_DEBUG=1` prints each case's operations
//! (with `BOLERO_RANDOM_SEED` from a failure, to read the failing case).

use log_core::testing::partition_model::{run, Op};

#[test]
fn partition_log_matches_the_reference_model() {
    let steps = std::sync::atomic::AtomicUsize::new(0);
    bolero::check!().with_type::<Vec<[u8; 16]>>().with_iterations(3_000).for_each(|chunks| {
        let ops = log_core::testing::ops::<Op>(chunks.as_flattened());
        steps.fetch_add(ops.len(), std::sync::atomic::Ordering::Relaxed);
        run(&ops)
    });
    // Guards against a generator that quietly produces nothing to check.
    let steps = steps.into_inner();
    eprintln!("{steps} operations checked");
    assert!(steps > 100_000, "too few operations were generated");
}
