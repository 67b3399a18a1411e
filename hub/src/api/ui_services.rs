//! `/ui/...` services and tasks: the services of an appliance (installed
//! and latest versions), install / uninstall / upgrade checked against the
//! appliance's free cpu and memory, toggle, service settings
//! (configureService with a growing settingVersion), and
//! `GET /ui/tasks/{taskId}/`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use protocol::document::{ServicePackage, ToggleAction};
use protocol::{JobDocument, TaskId, TaskType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::auth::Customer;
use super::catalog::{service_code, version_parts};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::paging::{PageBody, PageQuery, SortKeys};
use super::ui_appliances::{owned, owned_live};
use super::ui_model::{create_task, TaskAccepted, TaskBuilder};
use super::AppState;
use crate::model::ServiceStatus;
use crate::store::{ApplianceRecord, InstalledService, ServiceVersionView, TaskView};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/appliances/{id}/services", get(list))
        .route("/ui/services/{code}/install", post(install))
        .route("/ui/services/{code}/uninstall", post(uninstall))
        .route("/ui/services/{code}/upgrade", post(upgrade))
        .route("/ui/services/{code}/{id}/toggle", post(toggle))
        .route(
            "/ui/services/{code}/{id}/settings",
            get(get_settings).post(post_settings),
        )
        .route("/ui/tasks/{taskId}", get(task))
}

/// One service of an appliance: installed, available, or both.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplianceService {
    /// The service.
    pub service_code: String,
    /// Its name.
    pub name: String,
    /// Installed version, if installed.
    pub installed_version: Option<String>,
    /// Newest enabled version, if any.
    pub latest_version: Option<String>,
    /// enabled | disabled | notInstalled.
    pub status: String,
    /// healthy | unhealthy, when reported.
    pub health: Option<String>,
    /// A newer version can be installed.
    pub upgradable: bool,
}

const SORT: SortKeys = &[("serviceCode", ""), ("status", "")];

#[utoipa::path(get, path = "/ui/appliances/{id}/services", tag = "frontend",
    params(("id" = String, Path, description = "appliance id"), PageQuery),
    security(("apiKey" = [])),
    responses((status = 200, body = PageBody<ApplianceService>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list(
    customer: Customer,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<ApiJson<PageBody<ApplianceService>>, ApiError> {
    let paging = query.paging(SORT)?;
    let record = owned(&state, &customer, &id).await?;
    let catalog = state.store.service_catalog().await?;
    let mut services: Vec<ApplianceService> = catalog
        .into_iter()
        .filter_map(|(code, name, latest)| {
            let installed = record.services.iter().find(|s| s.service_code == code);
            if installed.is_none() && latest.is_none() {
                return None;
            }
            let newer = |i: &str, l: &str| match (version_parts(i, false), version_parts(l, false))
            {
                (Some(i), Some(l)) => i < l,
                _ => i != l,
            };
            Some(ApplianceService {
                upgradable: match (installed, &latest) {
                    (Some(i), Some(l)) => newer(&i.version, l),
                    _ => false,
                },
                status: installed.map_or("notInstalled".into(), |i| i.status.as_str().into()),
                health: installed.and_then(|i| i.health.clone()),
                installed_version: installed.map(|i| i.version.clone()),
                latest_version: latest,
                service_code: code,
                name,
            })
        })
        .collect();
    if query.sortby.as_deref() == Some("status") {
        services.sort_by(|a, b| {
            a.status
                .cmp(&b.status)
                .then(a.service_code.cmp(&b.service_code))
        });
    }
    Ok(ApiJson(PageBody::from_vec(services, &paging)))
}

/// Body of install, uninstall and upgrade.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceTarget {
    /// The appliance.
    pub appliance_id: String,
    /// A version (install and upgrade; default: the newest enabled).
    #[serde(default)]
    pub version: Option<String>,
}

async fn package(
    state: &AppState,
    code: &str,
    version: Option<String>,
) -> Result<ServiceVersionView, ApiError> {
    service_code(code)?;
    state
        .store
        .service_version(code.to_owned(), version)
        .await?
        .ok_or(ApiError::NotFound("unknown service version"))
}

fn document_package(view: &ServiceVersionView) -> ServicePackage {
    ServicePackage {
        service_code: view.service_code.clone(),
        target_version: view.version.clone(),
        branch: view.branch.clone(),
        image_path: view.image_path.clone(),
        image_sha256: view.image_sha256.clone(),
    }
}

/// Checks that `wanted` fits in the appliance's free cpu and memory, the
/// service `replacing` (an upgrade) giving its own share back.
fn check_capacity(
    record: &ApplianceRecord,
    wanted: &ServiceVersionView,
    replacing: Option<&str>,
) -> Result<(), ApiError> {
    let capacity = record.capacity.as_ref().ok_or_else(|| {
        ApiError::Conflict("the appliance's capacity is unknown: it has not registered".into())
    })?;
    let others = record
        .services
        .iter()
        .filter(|s| Some(s.service_code.as_str()) != replacing);
    let (cpu, memory) = others.fold((0.0, 0u64), |(c, m), s| {
        (c + s.request_cpu, m.saturating_add(s.request_memory))
    });
    let free_cpu = capacity.total_cpu - cpu;
    let free_memory = capacity.total_memory.saturating_sub(memory);
    if wanted.request_cpu > free_cpu + 1e-9 {
        return Err(ApiError::Conflict(format!(
            "not enough cpu: {} needs {} cores, {free_cpu} free",
            wanted.service_code, wanted.request_cpu
        )));
    }
    if wanted.request_memory > free_memory {
        return Err(ApiError::Conflict(format!(
            "not enough memory: {} needs {} bytes, {free_memory} free",
            wanted.service_code, wanted.request_memory
        )));
    }
    Ok(())
}

/// One install, upgrade or uninstall at a time per appliance: capacity is
/// checked against the installed services, so a second change in flight
/// could overcommit the appliance.
fn one_package_change(task: TaskBuilder<'_>) -> TaskBuilder<'_> {
    task.unless_open(TaskType::InstallService)
        .unless_open(TaskType::UpgradeService)
        .unless_open(TaskType::UninstallService)
}

/// What the task endpoints answer: `202` with a new task, or `200` with
/// nothing to do.
type TaskReply = (StatusCode, ApiJson<TaskAccepted>);

/// `200`: the appliance is already as asked, no task.
fn nothing_to_do(message: String) -> TaskReply {
    (StatusCode::OK, ApiJson(TaskAccepted::nothing(message)))
}

/// Creates the task: `202` with it.
async fn accepted(task: TaskBuilder<'_>) -> Result<TaskReply, ApiError> {
    Ok((StatusCode::ACCEPTED, ApiJson(task.send().await?)))
}

/// The service `code` as installed on the appliance, or `404`.
fn installed<'a>(
    record: &'a ApplianceRecord,
    code: &str,
) -> Result<&'a InstalledService, ApiError> {
    record
        .services
        .iter()
        .find(|s| s.service_code == code)
        .ok_or(ApiError::NotFound("service not installed"))
}

/// Install or upgrade.
#[derive(Debug, Clone, Copy)]
enum PackageChange {
    /// Refused (409) when another version is installed.
    Install,
    /// Refused (404) when the service is not installed.
    Upgrade,
}

/// Install or upgrade service `code` to `target`'s version: nothing to do
/// when the appliance already runs that version; else the capacity check,
/// the installed version giving its share back, and one package-change task.
async fn change_package(
    state: &AppState,
    customer: &Customer,
    code: &str,
    target: ServiceTarget,
    change: PackageChange,
) -> Result<TaskReply, ApiError> {
    let wanted = package(state, code, target.version).await?;
    let record = owned_live(state, customer, &target.appliance_id).await?;
    let current = match change {
        PackageChange::Install => record.services.iter().find(|s| s.service_code == code),
        PackageChange::Upgrade => Some(installed(&record, code)?),
    };
    if let Some(current) = current {
        if current.version == wanted.version {
            let message = format!("{code} {} is installed", current.version);
            return Ok(nothing_to_do(message));
        }
        if let PackageChange::Install = change {
            return Err(ApiError::Conflict(format!(
                "{code} {} is installed: upgrade it instead",
                current.version
            )));
        }
    }
    check_capacity(&record, &wanted, current.map(|_| code))?;
    let package = document_package(&wanted);
    let document = match change {
        PackageChange::Install => JobDocument::InstallService(package),
        PackageChange::Upgrade => JobDocument::UpgradeService(package),
    };
    let task = create_task(state, customer, record.appliance_id, document);
    accepted(one_package_change(task)).await
}

#[utoipa::path(post, path = "/ui/services/{code}/install", tag = "frontend",
    params(("code" = String, Path, description = "service code")),
    request_body = ServiceTarget, security(("apiKey" = [])),
    responses((status = 202, body = TaskAccepted),
        (status = 200, description = "already installed: nothing to do", body = TaskAccepted),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody,
            description = "not enough cpu or memory, or another package change is open")))]
async fn install(
    customer: Customer,
    State(state): State<AppState>,
    ApiPath(code): ApiPath<String>,
    ApiJson(target): ApiJson<ServiceTarget>,
) -> Result<TaskReply, ApiError> {
    change_package(&state, &customer, &code, target, PackageChange::Install).await
}

#[utoipa::path(post, path = "/ui/services/{code}/uninstall", tag = "frontend",
    params(("code" = String, Path, description = "service code")),
    request_body = ServiceTarget, security(("apiKey" = [])),
    responses((status = 202, body = TaskAccepted), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn uninstall(
    customer: Customer,
    State(state): State<AppState>,
    ApiPath(code): ApiPath<String>,
    ApiJson(target): ApiJson<ServiceTarget>,
) -> Result<TaskReply, ApiError> {
    service_code(&code)?;
    let record = owned_live(&state, &customer, &target.appliance_id).await?;
    installed(&record, &code)?;
    let document = JobDocument::UninstallService { service_code: code };
    let task = create_task(&state, &customer, record.appliance_id, document);
    accepted(task).await
}

#[utoipa::path(post, path = "/ui/services/{code}/upgrade", tag = "frontend",
    params(("code" = String, Path, description = "service code")),
    request_body = ServiceTarget, security(("apiKey" = [])),
    responses((status = 202, body = TaskAccepted),
        (status = 200, description = "already at that version", body = TaskAccepted),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn upgrade(
    customer: Customer,
    State(state): State<AppState>,
    ApiPath(code): ApiPath<String>,
    ApiJson(target): ApiJson<ServiceTarget>,
) -> Result<TaskReply, ApiError> {
    change_package(&state, &customer, &code, target, PackageChange::Upgrade).await
}

/// `POST /ui/services/{code}/{id}/toggle/` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToggleRequest {
    /// enable | disable.
    #[schema(value_type = String)]
    pub action: ToggleAction,
}

#[utoipa::path(post, path = "/ui/services/{code}/{id}/toggle", tag = "frontend",
    params(("code" = String, Path, description = "service code"),
        ("id" = String, Path, description = "appliance id")),
    request_body = ToggleRequest, security(("apiKey" = [])),
    responses((status = 202, body = TaskAccepted),
        (status = 200, description = "already so: nothing to do", body = TaskAccepted),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn toggle(
    customer: Customer,
    State(state): State<AppState>,
    ApiPath((code, id)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<ToggleRequest>,
) -> Result<TaskReply, ApiError> {
    service_code(&code)?;
    let record = owned_live(&state, &customer, &id).await?;
    let current = installed(&record, &code)?;
    let wanted = match request.action {
        ToggleAction::Enable => ServiceStatus::Enabled,
        ToggleAction::Disable => ServiceStatus::Disabled,
    };
    if current.status == wanted {
        return Ok(nothing_to_do(format!("{code} is {wanted}")));
    }
    let document = JobDocument::ToggleService {
        service_code: code,
        action: request.action,
    };
    let task = create_task(&state, &customer, record.appliance_id, document);
    accepted(task).await
}

/// A service's settings on one appliance.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSettings {
    /// The settings (an object; `{}` when never configured).
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    /// Their version (0 when never configured).
    pub setting_version: u64,
}

#[utoipa::path(get, path = "/ui/services/{code}/{id}/settings", tag = "frontend",
    params(("code" = String, Path, description = "service code"),
        ("id" = String, Path, description = "appliance id")),
    security(("apiKey" = [])),
    responses((status = 200, body = ServiceSettings), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_settings(
    customer: Customer,
    State(state): State<AppState>,
    ApiPath((code, id)): ApiPath<(String, String)>,
) -> Result<ApiJson<ServiceSettings>, ApiError> {
    service_code(&code)?;
    let record = owned(&state, &customer, &id).await?;
    let current = installed(&record, &code)?;
    Ok(ApiJson(ServiceSettings {
        settings: current.settings.clone().unwrap_or_default(),
        setting_version: current.setting_version,
    }))
}

/// `POST /ui/services/{code}/{id}/settings/` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettingsRequest {
    /// The service's settings, whole (at most 64 KiB of JSON).
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
}

#[utoipa::path(post, path = "/ui/services/{code}/{id}/settings", tag = "frontend",
    params(("code" = String, Path, description = "service code"),
        ("id" = String, Path, description = "appliance id")),
    request_body = ServiceSettingsRequest, security(("apiKey" = [])),
    responses((status = 202, body = TaskAccepted), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn post_settings(
    customer: Customer,
    State(state): State<AppState>,
    ApiPath((code, id)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<ServiceSettingsRequest>,
) -> Result<TaskReply, ApiError> {
    service_code(&code)?;
    let size = serde_json::to_vec(&request.settings).map_or(usize::MAX, |v| v.len());
    if size > 64 * 1024 {
        return Err(ApiError::bad_request(
            "invalid settings",
            "at most 64 KiB of JSON",
        ));
    }
    let record = owned_live(&state, &customer, &id).await?;
    let current = installed(&record, &code)?;
    let document = JobDocument::ConfigureService {
        service_code: code,
        settings: request.settings,
        setting_version: current.setting_version.saturating_add(1),
    };
    let task = create_task(&state, &customer, record.appliance_id, document);
    accepted(task).await
}

#[utoipa::path(get, path = "/ui/tasks/{taskId}", tag = "frontend",
    params(("taskId" = String, Path)), security(("apiKey" = [])),
    responses((status = 200, body = TaskView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn task(
    customer: Customer,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<TaskView>, ApiError> {
    let task_id: TaskId = id.parse().map_err(|_| ApiError::NotFound("unknown task"))?;
    state
        .store
        .customer_task(customer.0, task_id)
        .await?
        .map(ApiJson)
        .ok_or(ApiError::NotFound("unknown task"))
}
