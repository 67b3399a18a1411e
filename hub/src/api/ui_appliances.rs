//! `/ui/appliances/...`: the frontend's view of the caller's appliances
//! (list, image info, delete, upgrade, settings, storage, metrics), scoped
//! to the calling customer: another customer's appliance is a 404.
//! Changes are tasks: each answers the `taskId` that `GET /ui/tasks/{id}/`
//! follows.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use protocol::document::{StorageExtension, VolumeExtension};
use protocol::message::VolumeMetrics;
use protocol::{JobDocument, TaskType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::auth::Customer;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::paging::{PageBody, PageQuery, SortKeys};
use super::ui_model::{
    appliance_item, create_task, parse_appliance, settings_of, ApplianceItem, ApplianceSettings,
    TaskAccepted,
};
use super::AppState;
use crate::store::{ApplianceFilter, ApplianceRecord, ApplianceVersionView};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/appliances", get(list))
        .route("/ui/appliances/image", get(image))
        .route("/ui/appliances/{id}", axum::routing::delete(delete))
        .route("/ui/appliances/{id}/upgrade", post(upgrade))
        .route(
            "/ui/appliances/{id}/settings",
            get(get_settings).post(post_settings),
        )
        .route(
            "/ui/appliances/{id}/storage",
            get(get_storage).post(post_storage),
        )
        .route("/ui/appliances/{id}/metrics", post(metrics))
}

/// Loads one live appliance of the caller, or 404.
pub(crate) async fn owned(
    state: &AppState,
    customer: &Customer,
    raw_id: &str,
) -> Result<ApplianceRecord, ApiError> {
    let id = parse_appliance(raw_id)?;
    state
        .store
        .customer_appliance(customer.0, id)
        .await?
        .ok_or(ApiError::NotFound("unknown appliance"))
}

/// [`owned`], refusing an appliance its customer is deleting.
pub(crate) async fn owned_live(
    state: &AppState,
    customer: &Customer,
    raw_id: &str,
) -> Result<ApplianceRecord, ApiError> {
    let record = owned(state, customer, raw_id).await?;
    if record.unregistered_at.is_some() {
        return Err(ApiError::Conflict(
            "the appliance is being unregistered".into(),
        ));
    }
    Ok(record)
}

/// Filters of the appliance list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ApplianceQuery {
    /// Only appliances registered at or after this time (epoch ms).
    pub start: Option<i64>,
    /// Only this appliance.
    pub appliance_id: Option<String>,
}

const SORT: SortKeys = &[
    ("registeredAt", "coalesce(a.registered_at, a.created_at)"),
    ("hostname", "a.hostname"),
    ("lastConnectedTime", "a.connected_at"),
    ("version", "a.version"),
    ("status", "a.status"),
    ("applianceId", "a.id"),
];

#[utoipa::path(get, path = "/ui/appliances", tag = "frontend",
    params(PageQuery, ApplianceQuery), security(("apiKey" = [])),
    responses((status = 200, body = PageBody<ApplianceItem>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn list(
    customer: Customer,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
    ApiQuery(filter): ApiQuery<ApplianceQuery>,
) -> Result<ApiJson<PageBody<ApplianceItem>>, ApiError> {
    let paging = query.paging(SORT)?;
    let appliance_id = filter
        .appliance_id
        .as_deref()
        .map(parse_appliance)
        .transpose()?;
    let page = state
        .store
        .list_customer_appliances(
            customer.0,
            ApplianceFilter {
                registered_since: filter.start,
                appliance_id,
            },
            paging,
        )
        .await?;
    let latest = state.store.latest_appliance_version().await?;
    Ok(ApiJson(
        PageBody::new(page, &paging).map(|record| appliance_item(record, latest.as_ref())),
    ))
}

/// A register token this close to its expiry is replaced by the image
/// endpoint: one day.
const RENEW_BEFORE_MS: i64 = 24 * 3600 * 1000;

/// `GET /ui/appliances/image/` answer: the firmware image to deploy new
/// appliances with, and the register token they register with.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    /// The newest enabled firmware version, if any.
    pub latest: Option<ApplianceVersionView>,
    /// `Authorization: Bearer <registrationToken>` for `POST /va/register/`.
    pub registration_token: String,
    /// When it expires, epoch ms.
    pub expires_at: i64,
}

#[utoipa::path(get, path = "/ui/appliances/image", tag = "frontend",
    security(("apiKey" = [])),
    responses((status = 200, body = ImageInfo), (status = 401, body = ErrorBody)))]
async fn image(
    customer: Customer,
    State(state): State<AppState>,
) -> Result<ApiJson<ImageInfo>, ApiError> {
    let now = state.clock.now();
    // A fresh token when the stored one has expired (or is about to within
    // a day), as the original did.
    let stored = state.store.register_token(customer.0).await?;
    let (registration_token, expires_at) = match stored {
        Some((token, expires_at)) if expires_at > now.saturating_add(RENEW_BEFORE_MS) => {
            (token, expires_at)
        }
        _ => {
            let (token, expires_at) = state.registration.tokens.issue(customer.0, now);
            state
                .store
                .replace_register_token(customer.0, token.clone(), expires_at)
                .await?;
            (token, expires_at)
        }
    };
    Ok(ApiJson(ImageInfo {
        latest: state.store.latest_appliance_version().await?,
        registration_token,
        expires_at,
    }))
}

#[utoipa::path(delete, path = "/ui/appliances/{id}", tag = "frontend",
    params(("id" = String, Path, description = "appliance id")), security(("apiKey" = [])),
    responses((status = 202, body = TaskAccepted), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete(
    customer: Customer,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, ApiJson<TaskAccepted>), ApiError> {
    let record = owned_live(&state, &customer, &id).await?;
    let task = create_task(
        &state,
        &customer,
        record.appliance_id,
        JobDocument::Unregister {},
    )
    .unless_open(TaskType::Unregister)
    .unregister()
    .send()
    .await?;
    Ok((StatusCode::ACCEPTED, ApiJson(task)))
}

#[utoipa::path(post, path = "/ui/appliances/{id}/upgrade", tag = "frontend",
    params(("id" = String, Path, description = "appliance id")), security(("apiKey" = [])),
    responses((status = 202, body = TaskAccepted), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn upgrade(
    customer: Customer,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, ApiJson<TaskAccepted>), ApiError> {
    let record = owned_live(&state, &customer, &id).await?;
    let latest = state
        .store
        .latest_appliance_version()
        .await?
        .ok_or_else(|| ApiError::Conflict("no firmware version is published".into()))?;
    if record.version.as_deref() == Some(latest.display_version.as_str()) {
        return Err(ApiError::Conflict(format!(
            "the appliance already runs {}",
            latest.display_version
        )));
    }
    let document = JobDocument::UpgradeAppliance {
        target_version: latest.display_version,
        firmware_path: latest.firmware_path,
        firmware_sha256: latest.firmware_sha256,
    };
    let task = create_task(&state, &customer, record.appliance_id, document)
        .unless_open(TaskType::UpgradeAppliance)
        .send()
        .await?;
    Ok((StatusCode::ACCEPTED, ApiJson(task)))
}

#[utoipa::path(get, path = "/ui/appliances/{id}/settings", tag = "frontend",
    params(("id" = String, Path, description = "appliance id")), security(("apiKey" = [])),
    responses((status = 200, body = ApplianceSettings), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get_settings(
    customer: Customer,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<ApplianceSettings>, ApiError> {
    let record = owned(&state, &customer, &id).await?;
    Ok(ApiJson(settings_of(&record)))
}

#[utoipa::path(post, path = "/ui/appliances/{id}/settings", tag = "frontend",
    params(("id" = String, Path, description = "appliance id")),
    request_body = ApplianceSettings, security(("apiKey" = [])),
    responses((status = 202, body = TaskAccepted), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn post_settings(
    customer: Customer,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(settings): ApiJson<ApplianceSettings>,
) -> Result<(StatusCode, ApiJson<TaskAccepted>), ApiError> {
    let body = settings.validated_body()?;
    let record = owned_live(&state, &customer, &id).await?;
    let task = create_task(
        &state,
        &customer,
        record.appliance_id,
        JobDocument::UpdateApplianceConfig { body },
    )
    .send()
    .await?;
    Ok((StatusCode::ACCEPTED, ApiJson(task)))
}

/// `GET /ui/appliances/{id}/storage/` answer, from the latest metrics.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageInfo {
    /// One entry per volume (empty before the first metrics sample).
    #[schema(value_type = Vec<Object>)]
    pub volumes: Vec<VolumeMetrics>,
    /// When the sample was taken, epoch ms.
    pub sampled_at: Option<i64>,
    /// Total storage the appliance registered with, bytes.
    pub total_storage: Option<u64>,
    /// An extendStorage task is open.
    pub extend_ongoing: bool,
}

#[utoipa::path(get, path = "/ui/appliances/{id}/storage", tag = "frontend",
    params(("id" = String, Path, description = "appliance id")), security(("apiKey" = [])),
    responses((status = 200, body = StorageInfo), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get_storage(
    customer: Customer,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<StorageInfo>, ApiError> {
    let record = owned(&state, &customer, &id).await?;
    let extend_ongoing = record
        .open_tasks
        .iter()
        .any(|t| t.task_type == TaskType::ExtendStorage);
    Ok(ApiJson(StorageInfo {
        volumes: record
            .metrics
            .as_ref()
            .map(|m| m.storage.clone())
            .unwrap_or_default(),
        sampled_at: record.metrics.as_ref().map(|m| m.time),
        total_storage: record.capacity.as_ref().map(|c| c.total_storage),
        extend_ongoing,
    }))
}

/// `POST /ui/appliances/{id}/storage/` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    /// Volumes to grow: `[{"targetVolume": "data" | "image", "size": bytes}]`.
    #[schema(value_type = Vec<Object>)]
    pub extend: Vec<VolumeExtension>,
}

#[utoipa::path(post, path = "/ui/appliances/{id}/storage", tag = "frontend",
    params(("id" = String, Path, description = "appliance id")),
    request_body = ExtendRequest, security(("apiKey" = [])),
    responses((status = 202, body = TaskAccepted), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "an extension is ongoing")))]
async fn post_storage(
    customer: Customer,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<ExtendRequest>,
) -> Result<(StatusCode, ApiJson<TaskAccepted>), ApiError> {
    let document = JobDocument::ExtendStorage {
        storage: StorageExtension {
            extend: request.extend,
        },
    };
    document
        .validate()
        .map_err(|err| ApiError::bad_request("invalid storage extension", err))?;
    let record = owned_live(&state, &customer, &id).await?;
    let task = create_task(&state, &customer, record.appliance_id, document)
        .unless_open(TaskType::ExtendStorage)
        .send()
        .await?;
    Ok((StatusCode::ACCEPTED, ApiJson(task)))
}

/// `POST /ui/appliances/{id}/metrics/` answer: a collectMetrics task, and
/// the latest sample meanwhile.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsAccepted {
    /// The collectMetrics task.
    pub task_id: Option<String>,
    /// The latest sample (`event/metrics/post` params), if any.
    #[schema(value_type = Option<Object>)]
    pub latest: Option<Value>,
    /// When it was received, epoch ms.
    pub received_at: Option<i64>,
}

#[utoipa::path(post, path = "/ui/appliances/{id}/metrics", tag = "frontend",
    params(("id" = String, Path, description = "appliance id")), security(("apiKey" = [])),
    responses((status = 202, body = MetricsAccepted), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn metrics(
    customer: Customer,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, ApiJson<MetricsAccepted>), ApiError> {
    let record = owned_live(&state, &customer, &id).await?;
    let task = create_task(
        &state,
        &customer,
        record.appliance_id,
        JobDocument::CollectMetrics {},
    )
    .unless_open(TaskType::CollectMetrics)
    .send()
    .await?;
    let latest = record
        .metrics
        .map(|m| serde_json::to_value(m).unwrap_or(Value::Object(Map::new())));
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(MetricsAccepted {
            task_id: task.task_id,
            latest,
            received_at: record.metrics_at,
        }),
    ))
}
