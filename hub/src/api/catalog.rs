//! What operators publish: firmware versions
//! (`/api/v1/appliance-versions`) and service packages
//! (`/api/v1/service-versions`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::customers::short_text;
use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, ApiJson, ApiPath, ApiQuery};
use super::paging::{PageBody, PageQuery, SortKeys};
use super::AppState;
use crate::store::{
    ApplianceVersionView, NewApplianceVersion, NewServiceVersion, ServiceVersionView,
};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/appliance-versions",
            post(publish_version).get(list_versions),
        )
        .route(
            "/api/v1/appliance-versions/{version}/{action}",
            post(toggle_version),
        )
        .route(
            "/api/v1/service-versions",
            post(publish_service).get(list_services),
        )
        .route(
            "/api/v1/service-versions/{code}/{version}/{action}",
            post(toggle_service),
        )
}

/// Parses `a.b.c.d` (exactly `parts` numbers when `exact`, else 1-4).
pub(crate) fn version_parts(text: &str, exact: bool) -> Option<[u32; 4]> {
    let numbers: Vec<&str> = text.split('.').collect();
    let count_ok = if exact {
        numbers.len() == 4
    } else {
        (1..=4).contains(&numbers.len())
    };
    if !count_ok {
        return None;
    }
    let mut parts = [0u32; 4];
    for (slot, number) in parts.iter_mut().zip(&numbers) {
        let digits_only = !number.is_empty() && number.len() <= 9;
        if !digits_only || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = number.parse().ok()?;
    }
    Some(parts)
}

fn sha256_hex(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            format!("invalid {field}"),
            "expected 64 lowercase hex digits",
        ))
    }
}

/// `POST /api/v1/appliance-versions` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishVersionRequest {
    /// `major.minor.revision.build`, numbers.
    pub version: String,
    /// What appliances report once they run it (default: `version`).
    #[serde(default)]
    pub display_version: Option<String>,
    /// The firmware artifact (path in the artifact store, or URL).
    pub firmware_path: String,
    /// sha256 of the image, 64 lowercase hex digits.
    pub firmware_sha256: String,
    /// Whether appliances may be upgraded to it now (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[utoipa::path(post, path = "/api/v1/appliance-versions", tag = "operators",
    request_body = PublishVersionRequest, security(("admin" = [])),
    responses((status = 201, body = ApplianceVersionView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn publish_version(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<PublishVersionRequest>,
) -> Result<(StatusCode, ApiJson<ApplianceVersionView>), ApiError> {
    let parts = version_parts(&request.version, true).ok_or_else(|| {
        ApiError::bad_request("invalid version", "expected major.minor.revision.build")
    })?;
    let display_version = request.display_version.unwrap_or(request.version);
    short_text("displayVersion", &display_version, 64)?;
    short_text("firmwarePath", &request.firmware_path, 1024)?;
    sha256_hex("firmwareSha256", &request.firmware_sha256)?;
    let view = state
        .store
        .publish_appliance_version(
            NewApplianceVersion {
                parts,
                display_version,
                firmware_path: request.firmware_path,
                firmware_sha256: request.firmware_sha256,
                enabled: request.enabled.unwrap_or(true),
            },
            state.clock.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, ApiJson(view)))
}

/// Filter of the firmware version list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionFilter {
    /// Only enabled versions.
    pub enabled: Option<bool>,
}

const VERSION_SORT: SortKeys = &[
    ("version", "major|minor|revision|build"),
    ("publishedAt", "published_at"),
];

#[utoipa::path(get, path = "/api/v1/appliance-versions", tag = "operators",
    params(PageQuery, VersionFilter), security(("admin" = [])),
    responses((status = 200, body = PageBody<ApplianceVersionView>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_versions(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
    ApiQuery(filter): ApiQuery<VersionFilter>,
) -> Result<ApiJson<PageBody<ApplianceVersionView>>, ApiError> {
    let paging = query.paging(VERSION_SORT)?;
    let page = state
        .store
        .list_appliance_versions(filter.enabled.unwrap_or(false), paging)
        .await?;
    Ok(ApiJson(PageBody::new(page, &paging)))
}

/// The answer of enable / disable.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Enabled {
    /// Whether it is enabled now.
    pub enabled: bool,
}

fn action(raw: &str) -> Result<bool, ApiError> {
    match raw {
        "enable" => Ok(true),
        "disable" => Ok(false),
        _ => Err(ApiError::NotFound("no such endpoint")),
    }
}

#[utoipa::path(post, path = "/api/v1/appliance-versions/{version}/{action}", tag = "operators",
    params(("version" = String, Path, description = "major.minor.revision.build"),
        ("action" = String, Path, description = "enable | disable")),
    security(("admin" = [])),
    responses((status = 200, body = Enabled), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn toggle_version(
    _: Admin,
    State(state): State<AppState>,
    ApiPath((version, verb)): ApiPath<(String, String)>,
) -> Result<ApiJson<Enabled>, ApiError> {
    let enabled = action(&verb)?;
    let found = state
        .store
        .set_appliance_version_enabled(version, enabled, state.clock.now())
        .await?;
    if found {
        Ok(ApiJson(Enabled { enabled }))
    } else {
        Err(ApiError::NotFound("unknown appliance version"))
    }
}

/// `POST /api/v1/service-versions` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishServiceRequest {
    /// 1-64 characters of A-Z a-z 0-9 - _ .
    pub service_code: String,
    /// The service's name (kept from before when absent).
    #[serde(default)]
    pub service_name: Option<String>,
    /// Dotted numeric version, 1-4 parts.
    pub version: String,
    /// Release branch.
    pub branch: String,
    /// The image (path in the artifact store, or URL).
    pub image_path: String,
    /// sha256 of the image.
    pub image_sha256: String,
    /// Cores it needs (>= 0).
    pub request_cpu: f64,
    /// Bytes of memory it needs.
    pub request_memory: u64,
    /// Whether it may be installed now (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Checks a service code as topics.md defines it.
pub(crate) fn service_code(code: &str) -> Result<(), ApiError> {
    if protocol::document::is_service_code(code) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid serviceCode",
            protocol::document::SERVICE_CODE_RULE,
        ))
    }
}

#[utoipa::path(post, path = "/api/v1/service-versions", tag = "operators",
    request_body = PublishServiceRequest, security(("admin" = [])),
    responses((status = 201, body = ServiceVersionView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn publish_service(
    _: Admin,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<PublishServiceRequest>,
) -> Result<(StatusCode, ApiJson<ServiceVersionView>), ApiError> {
    service_code(&request.service_code)?;
    let parts = version_parts(&request.version, false)
        .ok_or_else(|| ApiError::bad_request("invalid version", "expected 1-4 dotted numbers"))?;
    if let Some(name) = &request.service_name {
        short_text("serviceName", name, 128)?;
    }
    short_text("branch", &request.branch, 64)?;
    short_text("imagePath", &request.image_path, 1024)?;
    sha256_hex("imageSha256", &request.image_sha256)?;
    if !request.request_cpu.is_finite() || !(0.0..=4096.0).contains(&request.request_cpu) {
        return Err(ApiError::bad_request(
            "invalid requestCpu",
            "expected 0-4096 cores",
        ));
    }
    if i64::try_from(request.request_memory).is_err() {
        return Err(ApiError::bad_request("invalid requestMemory", "too large"));
    }
    let code = request.service_code.clone();
    let version = request.version.clone();
    state
        .store
        .publish_service_version(
            NewServiceVersion {
                service_code: request.service_code,
                service_name: request.service_name,
                version: request.version,
                parts,
                branch: request.branch,
                image_path: request.image_path,
                image_sha256: request.image_sha256,
                request_cpu: request.request_cpu,
                request_memory: request.request_memory,
                enabled: request.enabled.unwrap_or(true),
            },
            state.clock.now(),
        )
        .await?;
    let page = state
        .store
        .list_service_versions(Some(code), paging_all())
        .await?;
    let view = page
        .items
        .into_iter()
        .find(|v| v.version == version)
        .ok_or_else(|| ApiError::Internal("published version not found".into()))?;
    Ok((StatusCode::CREATED, ApiJson(view)))
}

fn paging_all() -> crate::store::Paging {
    crate::store::Paging {
        offset: 0,
        limit: u32::MAX,
        descending: false,
        sort: "v.v1|v.v2|v.v3|v.v4",
    }
}

/// Filter of the service package list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ServiceFilter {
    /// Only this service's packages.
    pub service_code: Option<String>,
}

const SERVICE_SORT: SortKeys = &[
    ("version", "v.v1|v.v2|v.v3|v.v4"),
    ("serviceCode", "v.service_code"),
    ("createdAt", "v.created_at"),
];

#[utoipa::path(get, path = "/api/v1/service-versions", tag = "operators",
    params(PageQuery, ServiceFilter), security(("admin" = [])),
    responses((status = 200, body = PageBody<ServiceVersionView>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_services(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
    ApiQuery(filter): ApiQuery<ServiceFilter>,
) -> Result<ApiJson<PageBody<ServiceVersionView>>, ApiError> {
    let paging = query.paging(SERVICE_SORT)?;
    let page = state
        .store
        .list_service_versions(filter.service_code, paging)
        .await?;
    Ok(ApiJson(PageBody::new(page, &paging)))
}

#[utoipa::path(post, path = "/api/v1/service-versions/{code}/{version}/{action}",
    tag = "operators",
    params(("code" = String, Path), ("version" = String, Path),
        ("action" = String, Path, description = "enable | disable")),
    security(("admin" = [])),
    responses((status = 200, body = Enabled), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn toggle_service(
    _: Admin,
    State(state): State<AppState>,
    ApiPath((code, version, verb)): ApiPath<(String, String, String)>,
) -> Result<ApiJson<Enabled>, ApiError> {
    let enabled = action(&verb)?;
    let found = state
        .store
        .set_service_version_enabled(code, version, enabled, state.clock.now())
        .await?;
    if found {
        Ok(ApiJson(Enabled { enabled }))
    } else {
        Err(ApiError::NotFound("unknown service version"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_dotted_numbers() {
        assert_eq!(version_parts("3.2.0.15", true), Some([3, 2, 0, 15]));
        assert_eq!(version_parts("1.4", false), Some([1, 4, 0, 0]));
        for bad in [
            "",
            "1..2",
            "1.2.3",
            "a.b.c.d",
            "1.2.3.4.5",
            "-1.0.0.0",
            "1.2.3.9999999999",
        ] {
            assert_eq!(version_parts(bad, true), None, "{bad}");
        }
        assert_eq!(version_parts("1.2.3.4.5", false), None);
    }
}
