//! The rpcs of Dapr's service that layotto-rs does not serve — actors (they need placement and
//! hosting), workflows, jobs (a scheduler), cryptography and conversation (an LLM proxy) —
//! routed so each answers UNIMPLEMENTED saying so, instead of "unknown method". Every rpc of
//! the service is therefore routed (the tests check the list against the protos).

use std::rc::Rc;

use super::{DaprApi, path};
use crate::{
    error::ApiError,
    grpc::{
        router::{Call, Router},
        status::Status,
    },
};

/// Each unserved area with its rpcs.
pub(super) const NOT_SERVED: &[(&str, &[&str])] = &[
    (
        "actors",
        &[
            "RegisterActorTimer",
            "UnregisterActorTimer",
            "RegisterActorReminder",
            "UnregisterActorReminder",
            "UnregisterActorRemindersByType",
            "ListActorReminders",
            "GetActorState",
            "GetActorReminder",
            "ExecuteActorStateTransaction",
            "InvokeActor",
            "SubscribeActorEventsAlpha1",
        ],
    ),
    (
        "workflow",
        &[
            "StartWorkflowAlpha1",
            "GetWorkflowAlpha1",
            "PurgeWorkflowAlpha1",
            "TerminateWorkflowAlpha1",
            "PauseWorkflowAlpha1",
            "ResumeWorkflowAlpha1",
            "RaiseEventWorkflowAlpha1",
            "StartWorkflowBeta1",
            "GetWorkflowBeta1",
            "PurgeWorkflowBeta1",
            "TerminateWorkflowBeta1",
            "PauseWorkflowBeta1",
            "ResumeWorkflowBeta1",
            "RaiseEventWorkflowBeta1",
        ],
    ),
    (
        "jobs",
        &[
            "ScheduleJobAlpha1",
            "ScheduleJob",
            "GetJobAlpha1",
            "GetJob",
            "DeleteJobAlpha1",
            "DeleteJob",
            "DeleteJobsByPrefixAlpha1",
            "DeleteJobsByPrefix",
            "ListJobsAlpha1",
            "ListJobs",
        ],
    ),
    (
        "cryptography",
        &[
            "EncryptAlpha1",
            "DecryptAlpha1",
            "SubtleGetKeyAlpha1",
            "SubtleEncryptAlpha1",
            "SubtleDecryptAlpha1",
            "SubtleWrapKeyAlpha1",
            "SubtleUnwrapKeyAlpha1",
            "SubtleSignAlpha1",
            "SubtleVerifyAlpha1",
        ],
    ),
    ("conversation", &["ConverseAlpha1", "ConverseAlpha2"]),
];

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, _api: &Rc<DaprApi>) {
    for (area, rpcs) in NOT_SERVED {
        for rpc in *rpcs {
            let message = format!("layotto-rs does not serve Dapr's {area} API ({rpc})");
            router.add(
                path(rpc),
                Rc::new(move |_call: Call| {
                    let status = Status::from(ApiError::Unimplemented(message.clone()));
                    Box::pin(async move { Err(status) })
                }),
            );
        }
    }
}
