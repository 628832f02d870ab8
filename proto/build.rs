//! Compiles LayOtto's `spec/proto/runtime/v1/*.proto` and Dapr's `dapr/proto/{runtime,common}/v1/*.proto`
//! with protox (no system `protoc`) into prost messages, with `bytes` fields as `Bytes` (no copy
//! out of request buffers), plus tonic stubs with the `tonic` feature, and saves each API's
//! descriptor set for its contract test.

use std::{env, path::Path, path::PathBuf};

const LAYOTTO_PROTOS: &[&str] = &[
    "spec/proto/runtime/v1/runtime.proto",
    "spec/proto/runtime/v1/appcallback.proto",
    "spec/proto/runtime/v1/lifecycle.proto",
];

/// Dapr's service and app callback; they import the rest of the package and `common.proto`.
const DAPR_PROTOS: &[&str] = &[
    "dapr/proto/runtime/v1/dapr.proto",
    "dapr/proto/runtime/v1/appcallback.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=spec");
    println!("cargo:rerun-if-changed=dapr");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    compile(LAYOTTO_PROTOS, &out, "descriptor_set.bin")?;
    compile(DAPR_PROTOS, &out, "dapr_descriptor_set.bin")?;
    Ok(())
}

fn compile(
    protos: &[&str],
    out: &Path,
    descriptor_file: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let descriptors = protox::compile(protos, ["."])?;
    std::fs::write(
        out.join(descriptor_file),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    #[cfg(feature = "tonic")]
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .generate_default_stubs(true)
        .bytes(".")
        .compile_fds(descriptors)?;
    #[cfg(not(feature = "tonic"))]
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
