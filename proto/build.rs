//! Compiles `spec/proto/runtime/v1/*.proto` with protox (no system `protoc`) into prost messages,
//! with `bytes` fields as `Bytes` (no copy out of request buffers), plus tonic stubs with the `tonic` feature, and saves the descriptor set for the contract test.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "spec/proto/runtime/v1/runtime.proto",
    "spec/proto/runtime/v1/appcallback.proto",
    "spec/proto/runtime/v1/lifecycle.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=spec");
    let descriptors = protox::compile(PROTOS, ["."])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out.join("descriptor_set.bin"),
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
