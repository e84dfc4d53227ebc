//! Keel's fuzz targets. Each target is a `fn(&[u8])` in [`targets`] that asserts a property of
//! the code it drives and panics when it does not hold; the raw bytes are all a target gets, so
//! one input file means the same thing to every engine (structured inputs are decoded from the
//! bytes with `arbitrary::Unstructured` or bolero's byte driver inside the target).
//!
//! `tests/targets.rs` runs every target through [`fuzz_target!`]: first each file of
//! `fuzz/corpus/<target>/` and `fuzz/crashes/<target>/` (seeds and regressions), then bolero's
//! engine: random inputs for a few seconds under `cargo test`, libFuzzer under
//! `cargo bolero test` (see `ci/fuzz.sh`).
//!
//! The crate's global allocator records the largest single allocation request per thread, so
//! targets can bound what untrusted bytes make the process allocate ([`largest_allocation`]).

pub mod targets;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

pub use bolero;

/// How long each target runs with random inputs under `cargo test`
/// (`BOLERO_RANDOM_TEST_TIME_MS` overrides).
pub const TEST_SECS: u64 = 3;

/// The system allocator, noting the largest request made on each thread.
pub struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: nothing is noted while the thread's locals are torn down.
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to `System`; noting a size touches only a
// const-initialized thread-local `Cell` (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the largest single allocation it requested on this
/// thread. (An allocation the system cannot satisfy aborts the process before it is noted; a
/// bound checked here catches the sizes that do succeed, which is what a fuzzer sees.)
pub fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let outer = LARGEST.with(|largest| largest.replace(0));
    let result = f();
    let inner = LARGEST.with(|largest| largest.replace(outer.max(largest.get())));
    (result, inner)
}

/// The files of `fuzz/<kind>/<target>/`, sorted; none if it does not exist.
pub fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(kind).join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    files
}

/// Runs `target` on every seed and regression input of `name`; returns how many ran.
pub fn replay(name: &str, target: impl Fn(&[u8])) -> usize {
    let mut ran = 0;
    for kind in ["corpus", "crashes"] {
        for path in inputs(kind, name) {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&bytes)));
            if let Err(panic) = outcome {
                eprintln!("{name}: {} fails; its bytes: {bytes:?}", path.display());
                std::panic::resume_unwind(panic);
            }
            ran += 1;
        }
    }
    ran
}

/// The body of a fuzz target's test function: replays the target's corpus and crashes, then
/// hands it to bolero (random inputs for [`TEST_SECS`] under `cargo test`, the fuzzer under
/// `cargo bolero test`), and checks that at least `$min_cases` random inputs were run, so a
/// target that quietly tests nothing fails. `check!` must expand in the test function itself:
/// cargo-bolero finds targets by the path of the function it expands in.
#[macro_export]
macro_rules! fuzz_target {
    ($name:literal, $target:path, $min_cases:expr) => {{
        let replayed = $crate::replay($name, $target);
        let cases = ::std::sync::atomic::AtomicUsize::new(0);
        $crate::bolero::check!().with_test_time(::std::time::Duration::from_secs($crate::TEST_SECS)).for_each(
            |input: &[u8]| {
                cases.fetch_add(1, ::std::sync::atomic::Ordering::Relaxed);
                $target(input)
            },
        );
        let cases = cases.into_inner();
        eprintln!("{}: {} corpus and crash inputs, {} random inputs", $name, replayed, cases);
        assert!(cases >= $min_cases, "{}: only {} random inputs ran (want {})", $name, cases, $min_cases);
    }};
}
