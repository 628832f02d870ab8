//! The wire contract: every service, rpc, message, field (number, name, type) and enum value of
//! `reference/runtime-api.md` (LayOtto's API as documented for this project) must be exactly what
//! our `.proto` files compile to — no more fields, no fewer.

use std::collections::HashMap;

use prost::Message;
use prost_types::{
    DescriptorProto, FileDescriptorSet,
    field_descriptor_proto::{Label, Type},
};

const REFERENCE: &str = include_str!("../reference/runtime-api.md");
const PACKAGE: &str = ".spec.proto.runtime.v1.";

fn descriptors() -> FileDescriptorSet {
    FileDescriptorSet::decode(crate::DESCRIPTOR_SET).unwrap()
}

fn messages(set: &FileDescriptorSet) -> HashMap<String, &DescriptorProto> {
    set.file
        .iter()
        .filter(|f| f.package() == "spec.proto.runtime.v1")
        .flat_map(|f| &f.message_type)
        .map(|m| (m.name().to_owned(), m))
        .collect()
}

/// The reference's spelling of a field's type.
fn type_name(message: &DescriptorProto, field: &prost_types::FieldDescriptorProto) -> String {
    let short = |name: &str| name.rsplit('.').next().unwrap().to_owned();
    let scalar = |field: &prost_types::FieldDescriptorProto| match field.r#type() {
        Type::String => "string".to_owned(),
        Type::Bytes => "bytes".to_owned(),
        Type::Bool => "bool".to_owned(),
        Type::Int32 => "int32".to_owned(),
        Type::Int64 => "int64".to_owned(),
        Type::Message | Type::Enum => short(field.type_name()),
        other => format!("{other:?}"),
    };
    if field.label() == Label::Repeated && field.r#type() == Type::Message {
        let entry = message.nested_type.iter().find(|n| {
            n.name() == short(field.type_name())
                && n.options.as_ref().is_some_and(|o| o.map_entry())
        });
        if let Some(entry) = entry {
            return format!(
                "map<{},{}>",
                scalar(&entry.field[0]),
                scalar(&entry.field[1])
            );
        }
    }
    if field.label() == Label::Repeated {
        return format!("repeated {}", scalar(field));
    }
    scalar(field)
}

#[test]
fn every_message_field_matches_the_reference() {
    let set = descriptors();
    let messages = messages(&set);
    let mut checked = 0;
    for line in REFERENCE.lines().filter(|l| l.starts_with("- `")) {
        let (name, fields) = line[3..].split_once("`: ").unwrap();
        let message = messages
            .get(name)
            .unwrap_or_else(|| panic!("message {name} missing"));
        let expected: Vec<(i32, String, String)> = if fields == "(empty)" {
            Vec::new()
        } else {
            fields
                .split("; ")
                .map(|field| {
                    let field = field.split(" (oneof").next().unwrap();
                    let (number, rest) = field.split_once(' ').unwrap();
                    let (name, ty) = rest.split_once(": ").unwrap();
                    (number.parse().unwrap(), name.to_owned(), ty.to_owned())
                })
                .collect()
        };
        let mut actual: Vec<(i32, String, String)> = message
            .field
            .iter()
            .map(|f| (f.number(), f.name().to_owned(), type_name(message, f)))
            .collect();
        let mut expected_sorted = expected.clone();
        expected_sorted.sort();
        actual.sort();
        assert_eq!(actual, expected_sorted, "message {name}");
        checked += 1;
    }
    assert!(
        checked >= 60,
        "only {checked} messages in the reference were checked"
    );
}

#[test]
fn every_enum_matches_the_reference() {
    let set = descriptors();
    let messages = messages(&set);
    let mut checked = 0;
    for line in REFERENCE
        .lines()
        .filter(|l| l.trim_start().starts_with("- enum `"))
    {
        let rest = line.trim_start().trim_start_matches("- enum `");
        let (path, values) = rest.split_once("`: ").unwrap();
        let (outer, inner) = path.split_once('.').unwrap();
        let enumeration = messages[outer]
            .enum_type
            .iter()
            .find(|e| e.name() == inner)
            .unwrap_or_else(|| panic!("enum {path} missing"));
        let actual: Vec<String> = enumeration
            .value
            .iter()
            .map(|v| format!("{}={}", v.name(), v.number()))
            .collect();
        assert_eq!(actual.join(", "), values, "enum {path}");
        checked += 1;
    }
    assert_eq!(checked, 7, "enums checked");
}

#[test]
fn every_rpc_matches_the_reference() {
    let set = descriptors();
    let services: HashMap<String, &prost_types::ServiceDescriptorProto> = set
        .file
        .iter()
        .flat_map(|f| &f.service)
        .map(|s| (s.name().to_owned(), s))
        .collect();
    let short = |name: &str| {
        name.strip_prefix(PACKAGE)
            .or_else(|| name.strip_prefix(".google.protobuf."))
            .unwrap()
            .to_owned()
    };
    let mut service = None;
    let mut checked = 0;
    for line in REFERENCE.lines() {
        if let Some(name) = line.strip_prefix("### service `spec.proto.runtime.v1.") {
            let name = name.trim_end_matches('`');
            service = Some(
                *services
                    .get(name)
                    .unwrap_or_else(|| panic!("service {name} missing")),
            );
            continue;
        }
        let Some(service) = service else { continue };
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() != 5 || cells[1] == "rpc" || cells[1].starts_with("---") {
            continue;
        }
        let method = service
            .method
            .iter()
            .find(|m| m.name() == cells[1])
            .unwrap_or_else(|| panic!("rpc {} missing", cells[1]));
        let spell = |streaming: bool, ty: String| {
            if streaming {
                format!("stream {ty}")
            } else {
                ty
            }
        };
        assert_eq!(
            spell(method.client_streaming(), short(method.input_type())),
            cells[2],
            "request of {}",
            cells[1]
        );
        assert_eq!(
            spell(method.server_streaming(), short(method.output_type())),
            cells[3],
            "response of {}",
            cells[1]
        );
        checked += 1;
    }
    assert_eq!(checked, 26 + 2 + 1, "rpcs checked");
    let total: usize = services.values().map(|s| s.method.len()).sum();
    assert_eq!(
        total, checked,
        "the protos define rpcs the reference does not list"
    );
}
