//! End-to-end tests of the secrets (`local.file`, `local.env`) and file (`local`) building blocks,
//! called by tonic, reading and writing real files: the secrets on the real binary (`local.env`
//! reads the environment of the layotto-rs process, which only a process of its own can be
//! given), the files in the test process.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{collections::HashMap, process::Command};

use common::*;
use futures_util::stream;
use layotto_proto::runtime::{
    DelFileRequest, FileRequest, GetBulkSecretRequest, GetFileMetaRequest, GetFileRequest,
    GetSecretRequest, ListFileRequest, PutFileRequest, runtime_client::RuntimeClient,
};
use serde_json::json;
use tonic::{Code, transport::Channel};

/// A config with a file secret store (written here), an env secret store and a local file store,
/// all under `dir`.
fn config(dir: &std::path::Path) -> serde_json::Value {
    std::fs::write(
        dir.join("secrets.json"),
        r#"{"db": {"user": "admin", "port": 5432}, "token": "s3cr3t"}"#,
    )
    .unwrap();
    grpc_config(
        json!({
            "secret_store": {
                "secret_demo": {"type": "local.file", "metadata": {"secretsFile": dir.join("secrets.json")}},
                "env_demo": {"type": "local.env", "metadata": {}}
            },
            "file": {
                "file_demo": {"type": "local", "metadata": {"rootPath": dir.join("files")}},
                "file_paths": {"type": "local", "metadata": {}}
            }
        }),
        json!({}),
    )
}

fn file(name: &str) -> FileRequest {
    FileRequest {
        store_name: "file_demo".into(),
        name: name.into(),
        metadata: HashMap::new(),
    }
}

async fn put(
    client: &mut RuntimeClient<Channel>,
    name: &str,
    data: &[u8],
) -> Result<(), tonic::Status> {
    put_in(client, "file_demo", name, data).await
}

async fn put_in(
    client: &mut RuntimeClient<Channel>,
    store: &str,
    name: &str,
    data: &[u8],
) -> Result<(), tonic::Status> {
    let chunks: Vec<PutFileRequest> = data
        .chunks(64 * 1024)
        .map(|chunk| PutFileRequest {
            store_name: store.into(),
            name: name.into(),
            data: chunk.to_vec().into(),
            metadata: HashMap::new(),
        })
        .collect();
    client.put_file(stream::iter(chunks)).await.map(drop)
}

async fn get(client: &mut RuntimeClient<Channel>, name: &str) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = client
        .get_file(GetFileRequest {
            store_name: "file_demo".into(),
            name: name.into(),
            metadata: HashMap::new(),
        })
        .await?
        .into_inner();
    let mut data = Vec::new();
    while let Some(chunk) = stream.message().await? {
        data.extend_from_slice(&chunk.data);
    }
    Ok(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_come_from_the_file_flattened_and_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(binary());
    command.env("LAYOTTO_TEST_SECRET", "from the environment");
    let layotto = LayottoBinary::start_with(command, &config(dir.path()), &[], 1);
    let mut client = runtime_client(layotto.address("grpc")).await;
    let get = |store: &str, key: &str| GetSecretRequest {
        store_name: store.into(),
        key: key.into(),
        metadata: HashMap::new(),
    };
    let user = client
        .get_secret(get("secret_demo", "db:user"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        user.data,
        HashMap::from([("db:user".to_owned(), "admin".to_owned())])
    );
    let port = client
        .get_secret(get("secret_demo", "db:port"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(port.data["db:port"], "5432");
    let missing = client
        .get_secret(get("secret_demo", "nope"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let bulk = client
        .get_bulk_secret(GetBulkSecretRequest {
            store_name: "secret_demo".into(),
            metadata: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut keys: Vec<_> = bulk.data.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["db:port", "db:user", "token"]);
    assert_eq!(bulk.data["token"].secrets["token"], "s3cr3t");
    let env = client
        .get_secret(get("env_demo", "LAYOTTO_TEST_SECRET"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(env.data["LAYOTTO_TEST_SECRET"], "from the environment");
    let unknown = client.get_secret(get("vault", "x")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_stream_in_and_out_list_by_page_and_stay_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let layotto = Layotto::start(&config(dir.path()));
    let mut client = runtime_client(layotto.address("grpc")).await;

    let big = pattern(3 * 1024 * 1024 + 17, 9);
    put(&mut client, "reports/2026/big.bin", &big)
        .await
        .unwrap();
    assert_eq!(get(&mut client, "reports/2026/big.bin").await.unwrap(), big);
    assert_eq!(
        std::fs::read(dir.path().join("files/reports/2026/big.bin")).unwrap(),
        big
    );
    for name in ["a.txt", "b.txt", "c.txt"] {
        put(&mut client, name, name.as_bytes()).await.unwrap();
    }
    let meta = client
        .get_file_meta(GetFileMetaRequest {
            request: Some(file("reports/2026/big.bin")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.size, big.len() as i64);
    assert!(
        meta.last_modified.starts_with("20"),
        "{}",
        meta.last_modified
    );

    let list = |marker: &str| ListFileRequest {
        request: Some(file("")),
        page_size: 2,
        marker: marker.into(),
    };
    let first = client.list_file(list("")).await.unwrap().into_inner();
    let names: Vec<_> = first.files.iter().map(|f| f.file_name.as_str()).collect();
    assert_eq!(names, ["a.txt", "b.txt"]);
    assert!(first.is_truncated);
    let second = client
        .list_file(list(&first.marker))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = second.files.iter().map(|f| f.file_name.as_str()).collect();
    assert_eq!(names, ["c.txt", "reports/2026/big.bin"]);
    assert!(!second.is_truncated);

    client
        .del_file(DelFileRequest {
            request: Some(file("a.txt")),
        })
        .await
        .unwrap();
    assert_eq!(
        get(&mut client, "a.txt").await.unwrap_err().code(),
        Code::NotFound
    );
    let again = client
        .del_file(DelFileRequest {
            request: Some(file("a.txt")),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);

    // Names that would leave the root are refused, and nothing is written outside it.
    for name in ["../escape.txt", "/tmp/escape.txt", "x/../../escape.txt"] {
        let err = put(&mut client, name, b"x").await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name}");
        assert_eq!(
            get(&mut client, name).await.unwrap_err().code(),
            Code::InvalidArgument,
            "{name}"
        );
    }
    assert!(!dir.path().join("escape.txt").exists());
    assert_eq!(
        get(&mut client, "b.txt").await.unwrap(),
        b"b.txt",
        "still serving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_meta_carries_layottos_file_mode_and_is_dir() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let layotto = Layotto::start(&config(dir.path()));
    let mut client = runtime_client(layotto.address("grpc")).await;
    put(&mut client, "docs/note.txt", b"hello").await.unwrap();
    let on_disk = dir.path().join("files/docs");
    std::fs::set_permissions(on_disk.join("note.txt"), PermissionsExt::from_mode(0o640)).unwrap();
    std::fs::set_permissions(&on_disk, PermissionsExt::from_mode(0o750)).unwrap();
    let mut meta_of = async |name: &str| {
        let meta = client
            .get_file_meta(GetFileMetaRequest {
                request: Some(file(name)),
            })
            .await
            .unwrap()
            .into_inner();
        let facts: HashMap<String, Vec<String>> = meta
            .response
            .unwrap()
            .metadata
            .into_iter()
            .map(|(key, value)| (key, value.value))
            .collect();
        (meta.size, facts)
    };
    let (size, facts) = meta_of("docs/note.txt").await;
    assert_eq!(size, 5);
    // Go's os.FileMode in decimal, as LayOtto's local store reports it: 0o640 = 416.
    assert_eq!(facts["FileMode"], ["416"]);
    assert_eq!(facts["IsDir"], ["false"]);
    let (_, facts) = meta_of("docs").await;
    // os.ModeDir (1 << 31) | 0o750.
    assert_eq!(facts["FileMode"], [((1u64 << 31) | 0o750).to_string()]);
    assert_eq!(facts["IsDir"], ["true"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_root_path_names_are_file_system_paths_as_layottos() {
    let dir = tempfile::tempdir().unwrap();
    let layotto = Layotto::start(&config(dir.path()));
    let mut client = runtime_client(layotto.address("grpc")).await;
    let target = dir.path().join("elsewhere/note.txt");
    let name = target.to_str().unwrap();
    put_in(&mut client, "file_paths", name, b"anywhere")
        .await
        .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"anywhere");
    let meta = client
        .get_file_meta(GetFileMetaRequest {
            request: Some(FileRequest {
                store_name: "file_paths".into(),
                name: name.into(),
                metadata: HashMap::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.size, 8);
    // With a root the same absolute name is refused.
    let confined = put(&mut client, name, b"x").await.unwrap_err();
    assert_eq!(confined.code(), Code::InvalidArgument);
}
