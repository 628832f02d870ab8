//! layotto-bench: benchmarks of layotto-rs. `cargo bench -p layotto-bench` runs the
//! micro-benchmarks under `benches/`; see `benches/README.md` for the method and latest figures.
#![forbid(unsafe_code)]
