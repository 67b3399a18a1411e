//! `GET /openapi.json`, generated from the handlers' `#[utoipa::path]`
//! annotations and the request and response types' `ToSchema` derives, and
//! the interactive documentation at `/docs` (Swagger UI, shipped inside
//! the binary: the `vendored` build of utoipa-swagger-ui).

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::{
    appliances, catalog, customers, health, jobs, metrics, register, tags, ui_appliances, ui_logs,
    ui_services, va,
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
        jobs::create, jobs::summary, jobs::executions, jobs::cancel,
        appliances::provision,
        customers::create, customers::list,
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
    modifiers(&Security),
    tags(
        (name = "operators", description = "Fleet operators, `Authorization: Bearer <admin token>`"),
        (name = "frontend", description = "A customer's frontend, `Authorization: Bearer <api key>`"),
        (name = "appliances", description = "Appliances: register token, then appliance token"),
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

/// `/openapi.json` and `/docs` (stateless: merged after the state is
/// given).
pub fn router() -> Router {
    SwaggerUi::new(DOCS_PATH)
        .url("/openapi.json", ApiDoc::openapi())
        .into()
}
