//! LayOtto's `spec.proto.runtime.v1.Lifecycle` service: `ApplyConfiguration` hands a component
//! its new metadata at run time (as LayOtto's `pkg/grpc/lifecycle`: the component is found by
//! `kind`, its building block's config key, and `name`). Runs on the calling shard.

use std::rc::Rc;

use layotto_proto::runtime::{ApplyConfigurationResponse, DynamicConfiguration};

use super::RuntimeApi;
use crate::{
    error::ApiError,
    grpc::{
        router::{Router, unary},
        status::Status,
    },
};

/// Path prefix of the service's rpcs.
const SERVICE: &str = "/spec.proto.runtime.v1.Lifecycle/";

/// Adds the service's rpc to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<RuntimeApi>) {
    router.add(
        format!("{SERVICE}ApplyConfiguration"),
        unary(api.clone(), RuntimeApi::apply_configuration),
    );
}

/// LayOtto's message for a missing field.
fn no_field(field: &str) -> Status {
    ApiError::InvalidArgument(format!("field {field} is not configured")).into()
}

impl RuntimeApi {
    async fn apply_configuration(
        self: Rc<Self>,
        request: DynamicConfiguration,
    ) -> Result<ApplyConfigurationResponse, Status> {
        let Some(config) = request.component_config.filter(|c| !c.kind.is_empty()) else {
            return Err(no_field("kind"));
        };
        if config.name.is_empty() {
            return Err(no_field("name"));
        }
        if config.metadata.is_empty() {
            return Err(no_field("metadata"));
        }
        let Some((label, component)) = self
            .components()
            .all()
            .into_iter()
            .find(|(label, _)| label.block == config.kind && label.name == config.name)
        else {
            return Err(ApiError::InvalidArgument(format!(
                "component not found. kind: {} , name: {}",
                config.kind, config.name
            ))
            .into());
        };
        component
            .apply_configuration(&config.metadata)
            .await
            .map_err(|err| match err {
                ApiError::InvalidArgument(why) => {
                    ApiError::InvalidArgument(format!("{label} {why}"))
                }
                other => other,
            })?;
        Ok(ApplyConfigurationResponse {})
    }
}
