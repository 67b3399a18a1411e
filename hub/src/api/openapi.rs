//! `GET /openapi.json`, generated from the handlers' `#[utoipa::path]`
//! annotations and the request and response types' `ToSchema` derives, and
//! the interactive documentation at `/docs` (Swagger UI, shipped inside
//! the binary: the `vendored` build of utoipa-swagger-ui).

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::{
    appliances, artifacts, catalog, customers, files, health, jobs, liveness, metrics, register,
    tags, ui_appliances, ui_logs, ui_services, va,
};

/// Where the interactive documentation is served.
pub const DOCS_PATH: &str = "/docs";

/// The whole REST surface.
#[derive(OpenApi)]
#[openapi(
    info(title = "Fleethub", description = "REST API of the Fleethub IoT hub: operators \
        (admin token), the frontend (a customer's api key) and appliances (register token, \
        appliance token)."),
    paths(
        health::healthz, metrics::metrics,
        jobs::create, jobs::summary, jobs::executions, jobs::cancel, jobs::resume,
        appliances::provision, liveness::liveness,
        customers::create, customers::list,
        artifacts::upload, artifacts::list, artifacts::register_external, artifacts::one,
        files::artifact, files::log_archive, files::upload_log,
        catalog::publish_version, catalog::list_versions, catalog::toggle_version,
        catalog::publish_service, catalog::list_services, catalog::toggle_service,
        tags::create_tag, tags::list_tags, tags::assign_tag,
        register::register,
        va::task_result, va::healthz, va::audit_log, va::service_metrics,
        ui_appliances::list, ui_appliances::image, ui_appliances::delete,
        ui_appliances::upgrade, ui_appliances::get_settings, ui_appliances::post_settings,
        ui_appliances::get_storage, ui_appliances::post_storage, ui_appliances::metrics,
        ui_logs::request, ui_logs::latest,
        ui_services::list, ui_services::install, ui_services::uninstall, ui_services::upgrade,
        ui_services::toggle, ui_services::get_settings, ui_services::post_settings,
        ui_services::task,
    ),
    modifiers(&Security, &OperationIds),
    tags(
        (name = "operators", description = "Fleet operators, `Authorization: Bearer <admin token>`"),
        (name = "frontend", description = "A customer's frontend, `Authorization: Bearer <api key>`"),
        (name = "appliances", description = "Appliances: register token, then appliance token"),
        (name = "files", description = "Downloads and log uploads through signed, expiring links \
            (`?expires=&sig=`): the signature is the authorization"),
        (name = "health", description = "Liveness"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, what) in [
            ("admin", "the operators' admin token"),
            ("apiKey", "a customer's api key"),
            ("registerToken", "a customer's register token (JWT)"),
            ("applianceToken", "the appliance's token"),
        ] {
            let scheme = HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(what))
                .build();
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

/// Names every operation after its method and path
/// (`get_ui_appliances_id_log`): handlers of different resources share
/// names (`list`, `create`) and one handler may serve GET and HEAD, but
/// OpenAPI wants each operation id once.
struct OperationIds;

impl Modify for OperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("options", &mut item.options),
                ("head", &mut item.head),
                ("patch", &mut item.patch),
                ("trace", &mut item.trace),
            ];
            for (method, operation) in operations {
                if let Some(operation) = operation {
                    operation.operation_id = Some(operation_id(method, path));
                }
            }
        }
    }
}

/// `get` and `/ui/appliances/{id}/log` give `get_ui_appliances_id_log`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(segment.chars().filter_map(|c| match c {
            '{' | '}' => None,
            c if c.is_ascii_alphanumeric() => Some(c),
            _ => Some('_'),
        }));
    }
    id
}

/// `/openapi.json` and `/docs` (stateless: merged after the state is
/// given).
pub fn router() -> Router {
    SwaggerUi::new(DOCS_PATH)
        .url("/openapi.json", ApiDoc::openapi())
        .into()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn operation_ids_are_unique() {
        let spec = ApiDoc::openapi();
        let mut seen = HashSet::new();
        for (path, item) in &spec.paths.paths {
            for operation in [&item.get, &item.put, &item.post, &item.delete, &item.head]
                .into_iter()
                .flatten()
            {
                let id = operation.operation_id.clone().unwrap_or_default();
                assert!(seen.insert(id.clone()), "{id} ({path}) twice");
            }
        }
        assert!(seen.contains("get_ui_appliances_id_log"), "{seen:?}");
        assert!(seen.contains("head_artifacts_sha256_name"), "{seen:?}");
        assert_eq!(
            operation_id("put", "/uploads/logs/{task}"),
            "put_uploads_logs_task"
        );
    }
}
