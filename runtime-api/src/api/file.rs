//! The file rpcs: streamed `PutFile` and `GetFile`, `ListFile`, `DelFile`, `GetFileMeta`. Runs on the calling shard.

use layotto_proto::runtime::{
    DelFileRequest, FileInfo, FileMeta, FileMetaValue, GetFileMetaRequest, GetFileMetaResponse,
    GetFileRequest, GetFileResponse, ListFileRequest, ListFileResp, PutFileRequest,
};
use std::collections::HashMap;
use std::rc::Rc;

use super::{RuntimeApi, path};
use crate::{
    error::ApiError,
    grpc::{
        call::{Requests, Responses},
        router::{Router, client_streaming, server_streaming, unary},
        status::Status,
    },
};

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<RuntimeApi>) {
    router
        .add(
            path("PutFile"),
            client_streaming(api.clone(), RuntimeApi::put_file),
        )
        .add(
            path("GetFile"),
            server_streaming(api.clone(), RuntimeApi::get_file),
        )
        .add(path("ListFile"), unary(api.clone(), RuntimeApi::list_file))
        .add(path("DelFile"), unary(api.clone(), RuntimeApi::del_file))
        .add(
            path("GetFileMeta"),
            unary(api.clone(), RuntimeApi::get_file_meta),
        );
}

impl RuntimeApi {
    /// The first message names the store and the file; every message's `data` is appended.
    async fn put_file(self: Rc<Self>, mut requests: Requests) -> Result<(), Status> {
        let Some(first) = requests.next::<PutFileRequest>().await? else {
            return Err(ApiError::InvalidArgument("PutFile carried no message".into()).into());
        };
        let store = self.components().files.get(&first.store_name)?;
        let upload = store.start_put(&first.name).await?;
        let written = async {
            store.append(&upload, first.data).await?;
            while let Some(next) = requests.next::<PutFileRequest>().await? {
                store.append(&upload, next.data).await?;
            }
            Ok::<(), Status>(())
        }
        .await;
        store.finish_put(upload, written.is_ok()).await?;
        written
    }

    async fn get_file(
        self: Rc<Self>,
        request: GetFileRequest,
        mut responses: Responses,
    ) -> Result<(), Status> {
        let store = self.components().files.get(&request.store_name)?;
        let mut offset = 0u64;
        loop {
            // Read the next chunk only once the client can take it (a stalled reader pins none).
            responses.window_open(1).await?;
            let data = store.read_chunk(&request.name, offset).await?;
            if data.is_empty() {
                return Ok(());
            }
            offset += data.len() as u64;
            responses
                .send(&GetFileResponse { data: data.into() })
                .await?;
        }
    }

    async fn list_file(self: Rc<Self>, request: ListFileRequest) -> Result<ListFileResp, Status> {
        let file = request.request.unwrap_or_default();
        let store = self.components().files.get(&file.store_name)?;
        let page_size = usize::try_from(request.page_size)
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or(100);
        let page = store.list(&file.name, page_size, request.marker).await?;
        Ok(ListFileResp {
            is_truncated: page.next_marker.is_some(),
            marker: page.next_marker.unwrap_or_default(),
            files: page
                .entries
                .into_iter()
                .map(|entry| FileInfo {
                    file_name: entry.name,
                    size: entry.size as i64,
                    last_modified: entry.last_modified,
                    metadata: HashMap::new(),
                })
                .collect(),
        })
    }

    async fn del_file(self: Rc<Self>, request: DelFileRequest) -> Result<(), Status> {
        let file = request.request.unwrap_or_default();
        let store = self.components().files.get(&file.store_name)?;
        Ok(store.delete(&file.name).await?)
    }

    async fn get_file_meta(
        self: Rc<Self>,
        request: GetFileMetaRequest,
    ) -> Result<GetFileMetaResponse, Status> {
        let file = request.request.unwrap_or_default();
        let store = self.components().files.get(&file.store_name)?;
        let stat = store.meta(&file.name).await?;
        Ok(GetFileMetaResponse {
            size: stat.size as i64,
            last_modified: stat.last_modified,
            response: Some(FileMeta {
                metadata: stat
                    .metadata
                    .into_iter()
                    .map(|(key, value)| (key, FileMetaValue { value }))
                    .collect(),
            }),
        })
    }
}
