//! `protoc` as prost-build runs it, made of protox: takes protoc's `-I DIR`, `-o FILE`,
//! `--include_imports` and `--include_source_info` and the proto files, and writes the encoded
//! `FileDescriptorSet`. Any other option is refused, so a caller that needs more of protoc finds
//! out at once.

use std::{ffi::OsString, path::PathBuf, process::ExitCode};

/// What one invocation asks for.
#[derive(Default)]
struct Invocation {
    includes: Vec<PathBuf>,
    output: Option<PathBuf>,
    include_imports: bool,
    include_source_info: bool,
    files: Vec<PathBuf>,
}

/// Reads protoc's command line as prost-build writes it (`-I DIR`, `-o FILE`, flags, files).
fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, String> {
    let mut invocation = Invocation::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .map(PathBuf::from)
                .ok_or(format!("{arg:?} needs a value"))
        };
        match arg.to_str() {
            Some("--include_imports") => invocation.include_imports = true,
            Some("--include_source_info") => invocation.include_source_info = true,
            Some("-I") => invocation.includes.push(value()?),
            Some("-o") => invocation.output = Some(value()?),
            Some(option) if option.starts_with('-') => {
                return Err(format!("unsupported protoc option {option}"));
            }
            _ => invocation.files.push(arg.into()),
        }
    }
    Ok(invocation)
}

/// Compiles the files and writes the descriptor set where `-o` says.
fn run(invocation: Invocation) -> Result<(), String> {
    let output = invocation.output.ok_or("no -o given")?;
    let includes = if invocation.includes.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        invocation.includes
    };
    let mut compiler = protox::Compiler::new(includes).map_err(|err| err.to_string())?;
    compiler
        .include_imports(invocation.include_imports)
        .include_source_info(invocation.include_source_info);
    for file in &invocation.files {
        compiler.open_file(file).map_err(|err| err.to_string())?;
    }
    std::fs::write(&output, compiler.encode_file_descriptor_set())
        .map_err(|err| format!("cannot write {}: {err}", output.display()))
}

fn main() -> ExitCode {
    match parse(std::env::args_os().skip(1)).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("protoc-protox: {err}");
            ExitCode::FAILURE
        }
    }
}
