//! Dapr's wire contract: every service, rpc, message (nested ones too), field (number, name,
//! label, type, oneof) and enum value of `reference/dapr-api.txt` — rendered from dapr/dapr's own
//! `.proto` files at tag v1.18.3 — must be exactly what our copies in `dapr/` compile to.
//!
//! To renew the reference for another Dapr release, extract its protos and run the ignored test:
//! `git -C DAPR archive vX.Y.Z dapr/proto | tar -x -C /tmp/dapr` then
//! `DAPR_PROTO_ROOT=/tmp/dapr DAPR_TAG=vX.Y.Z cargo test -p layotto-proto --features tonic dapr_contract::write_reference -- --ignored`.

use std::fmt::Write as _;

use prost::Message;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet,
    field_descriptor_proto::{Label, Type},
};

const REFERENCE: &str = include_str!("../reference/dapr-api.txt");
const PROTOS: &[&str] = &[
    "dapr/proto/runtime/v1/dapr.proto",
    "dapr/proto/runtime/v1/appcallback.proto",
];

/// The contract of the `dapr.proto.*` files of `set`, one line per service, rpc, message,
/// field and enum, sorted so the order of declarations does not matter.
fn render(set: &FileDescriptorSet) -> Vec<String> {
    let mut lines = Vec::new();
    for file in set.file.iter().filter(|f| f.package().starts_with("dapr.")) {
        let package = file.package();
        for service in &file.service {
            lines.push(format!("service {package}.{}", service.name()));
            for rpc in &service.method {
                let stream = |s: bool| if s { "stream " } else { "" };
                lines.push(format!(
                    "service {package}.{} rpc {}({}{}) returns ({}{})",
                    service.name(),
                    rpc.name(),
                    stream(rpc.client_streaming()),
                    rpc.input_type().trim_start_matches('.'),
                    stream(rpc.server_streaming()),
                    rpc.output_type().trim_start_matches('.'),
                ));
            }
        }
        for message in &file.message_type {
            render_message(
                &format!("{package}.{}", message.name()),
                message,
                &mut lines,
            );
        }
        for enumeration in &file.enum_type {
            render_enum(
                &format!("{package}.{}", enumeration.name()),
                enumeration,
                &mut lines,
            );
        }
    }
    lines.sort();
    lines
}

fn render_message(name: &str, message: &DescriptorProto, lines: &mut Vec<String>) {
    lines.push(format!("message {name}"));
    for field in &message.field {
        let mut line = format!(
            "message {name} field {} {}: {}",
            field.number(),
            field.name(),
            type_name(message, field)
        );
        if let Some(index) = field.oneof_index
            && !field.proto3_optional()
        {
            let _ = write!(
                line,
                " (oneof {})",
                message.oneof_decl[index as usize].name()
            );
        }
        lines.push(line);
    }
    for nested in &message.nested_type {
        if !nested.options.as_ref().is_some_and(|o| o.map_entry()) {
            render_message(&format!("{name}.{}", nested.name()), nested, lines);
        }
    }
    for enumeration in &message.enum_type {
        render_enum(
            &format!("{name}.{}", enumeration.name()),
            enumeration,
            lines,
        );
    }
}

fn render_enum(name: &str, enumeration: &EnumDescriptorProto, lines: &mut Vec<String>) {
    let values: Vec<String> = enumeration
        .value
        .iter()
        .map(|v| format!("{}={}", v.name(), v.number()))
        .collect();
    lines.push(format!("enum {name}: {}", values.join(", ")));
}

fn type_name(message: &DescriptorProto, field: &FieldDescriptorProto) -> String {
    let scalar = |field: &FieldDescriptorProto| match field.r#type() {
        Type::Message | Type::Enum => field.type_name().trim_start_matches('.').to_owned(),
        other => format!("{other:?}").to_lowercase(),
    };
    if field.label() == Label::Repeated && field.r#type() == Type::Message {
        let short = field.type_name().rsplit('.').next().unwrap();
        let entry = message
            .nested_type
            .iter()
            .find(|n| n.name() == short && n.options.as_ref().is_some_and(|o| o.map_entry()));
        if let Some(entry) = entry {
            return format!(
                "map<{},{}>",
                scalar(&entry.field[0]),
                scalar(&entry.field[1])
            );
        }
    }
    match field.label() {
        Label::Repeated => format!("repeated {}", scalar(field)),
        _ if field.proto3_optional() => format!("optional {}", scalar(field)),
        _ => scalar(field),
    }
}

#[test]
fn every_dapr_service_rpc_message_field_and_enum_matches_the_reference() {
    let ours = render(&FileDescriptorSet::decode(crate::dapr::DESCRIPTOR_SET).unwrap());
    let reference: Vec<&str> = REFERENCE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let missing: Vec<&&str> = reference
        .iter()
        .filter(|l| !ours.iter().any(|o| o == **l))
        .collect();
    let extra: Vec<&String> = ours
        .iter()
        .filter(|o| !reference.contains(&o.as_str()))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "our Dapr protos differ from the reference:\nmissing: {missing:#?}\nnot in the reference: {extra:#?}"
    );
    let rpcs = |service: &str| {
        reference
            .iter()
            .filter(|l| l.starts_with(&format!("service dapr.proto.runtime.v1.{service} rpc ")))
            .count()
    };
    // Dapr v1.18.3's service counts, so a truncated reference cannot pass.
    assert_eq!(rpcs("Dapr"), 72, "rpcs of Dapr");
    assert_eq!(rpcs("AppCallback"), 7, "rpcs of AppCallback");
}

#[test]
#[ignore = "renews reference/dapr-api.txt from dapr/dapr's protos in $DAPR_PROTO_ROOT"]
fn write_reference() {
    let root = std::env::var("DAPR_PROTO_ROOT").expect("DAPR_PROTO_ROOT");
    let tag = std::env::var("DAPR_TAG").expect("DAPR_TAG");
    let set = protox::compile(PROTOS, [root]).unwrap();
    let mut text = format!(
        "# Dapr's gRPC API contract, rendered by proto/src/dapr_contract.rs (`write_reference`)\n\
         # from github.com/dapr/dapr tag {tag}, files dapr/proto/runtime/v1/*.proto and\n\
         # dapr/proto/common/v1/common.proto (the ones dapr.proto and appcallback.proto import).\n\
         # One line per service, rpc, message, field (number name: type) and enum, sorted.\n"
    );
    for line in render(&set) {
        text.push_str(&line);
        text.push('\n');
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/reference/dapr-api.txt");
    std::fs::write(path, text).unwrap();
}
