//! Compiles `proto/udf.proto` with prost-build, using the pure-Rust `protox`
//! compiler so that a fresh machine needs nothing but cargo (no system protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/udf.proto");
    let descriptors = protox::compile(["proto/udf.proto"], ["proto"])?;
    prost_build::Config::new()
        // Maps stay HashMaps on the hot path; ordering is applied where Kapacitor
        // sorts (JSON encoding, group ids), not on every decode.
        .compile_fds(descriptors)?;
    Ok(())
}
