//! The configuration: `POST /v1/admin/reload`.

use super::prelude::*;

pub(super) fn routes(r: &mut Routes) {
    r.guarded(Post, "/v1/admin/reload", "Reload", (Object::Config, Verb::Update), reload);
}

/// `POST /v1/admin/reload`: the same reload as SIGHUP, with the outcome in
/// the answer (200 with what changed, 422 with every problem found).
async fn reload(cx: Cx) -> Result<Resp, Resp> {
    cx.authorize(cx.own_team())?;
    let shared = cx.shared.clone();
    let outcome = tokio::task::spawn_blocking(move || crate::reload::reload(&shared.live()))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &format!("reload task failed: {e}")))?;
    match outcome {
        Ok(report) => Ok(json_response(
            StatusCode::OK,
            &api::ReloadResponse {
                report: api::ReloadReport {
                    applied: report.applied,
                    file: report.file,
                    needs_restart: report.needs_restart,
                },
                status: "reloaded".to_owned(),
            },
        )),
        Err(e @ crate::reload::ReloadError::NoFile) => {
            Err(error(StatusCode::CONFLICT, "no_config_file", &e.to_string()))
        }
        Err(e) => Err(error(StatusCode::UNPROCESSABLE_ENTITY, "config_refused", &e.to_string())),
    }
}
