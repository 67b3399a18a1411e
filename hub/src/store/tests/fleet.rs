//! The REST surface's store methods: registration, tasks of a customer
//! with their checks, the effects of finished tasks in the transaction of
//! their transition, and metrics retention.

use protocol::document::ServicePackage;
use protocol::message::{CpuMetrics, MemoryMetrics, MetricsParams};
use protocol::{ApplianceId, JobDocument, ReportedStatus, TaskType};

use super::{update, within, Fixture, T0};
use crate::model::{CustomerId, ServiceStatus};
use crate::store::{
    Capacity, NewCustomer, NewRegistration, NewServiceVersion, Paging, Registered, StoreError,
    TaskRequest, UpdateResult, RETENTION_MS,
};

async fn customer(f: &Fixture) -> CustomerId {
    let id = CustomerId::new_random();
    let created = f.store.create_customer_with_credentials(NewCustomer {
        customer_id: id,
        name: "ACME".into(),
        api_key_hash: format!("key-{id}"),
        register_token: ("jwt".into(), T0 + 1),
        now: T0,
    });
    within(created).await.expect("customer");
    id
}

fn registration(customer: CustomerId, known: Option<ApplianceId>) -> NewRegistration {
    NewRegistration {
        customer_id: customer,
        known_id: known,
        fresh_id: ApplianceId::new_random(),
        product_key: Default::default(),
        hostname: "va-1".into(),
        ipv4_address: "192.0.2.1".into(),
        version: "3.1.4".into(),
        capacity: Capacity {
            total_cpu: 4.0,
            total_memory: 1 << 33,
            total_storage: 1 << 36,
        },
        token_hash: "hash".into(),
        token_expires_at: T0 + 1_000_000,
        now: T0,
    }
}

async fn registered(f: &Fixture, customer: CustomerId) -> ApplianceId {
    within(f.store.register_appliance(registration(customer, None)))
        .await
        .expect("registered")
        .id()
}

fn task(customer: CustomerId, appliance: ApplianceId, document: JobDocument) -> TaskRequest {
    TaskRequest {
        customer_id: customer,
        appliance_id: appliance,
        document,
        unless_open: Vec::new(),
        unregister: false,
        now: T0,
    }
}

/// Creates, releases and completes a task; returns the update's result.
async fn run(f: &Fixture, request: TaskRequest) -> UpdateResult {
    let appliance = request.appliance_id;
    let created = within(f.store.create_task(request)).await.expect("task");
    let released = f.release(created.job_id, 10).await;
    assert_eq!(released.get(&appliance), Some(&created.task_id));
    let done = update(&created.task_id, ReportedStatus::Succeeded);
    within(f.store.record_update(appliance, done, T0 + 20))
        .await
        .expect("update")
}

#[tokio::test]
async fn registering_again_rotates_only_for_the_same_customer() {
    let f = Fixture::new();
    let acme = customer(&f).await;
    let globex = customer(&f).await;
    let id = registered(&f, acme).await;
    let again = within(f.store.register_appliance(registration(acme, Some(id))))
        .await
        .expect("again");
    assert_eq!(again, Registered::Rotated(id));
    let theirs = within(f.store.register_appliance(registration(globex, Some(id))))
        .await
        .expect("theirs");
    assert!(matches!(theirs, Registered::Created(other) if other != id));
    let unknown = CustomerId::new_random();
    let refused = f.store.register_appliance(registration(unknown, None));
    assert!(matches!(
        within(refused).await,
        Err(StoreError::UnknownCustomer(_))
    ));
}

#[tokio::test]
async fn finished_tasks_change_the_appliance_in_the_same_transaction() {
    let f = Fixture::new();
    let acme = customer(&f).await;
    let id = registered(&f, acme).await;
    let published = f.store.publish_service_version(
        NewServiceVersion {
            service_code: "dns".into(),
            service_name: None,
            version: "1.4.2".into(),
            parts: [1, 4, 2, 0],
            branch: "stable".into(),
            image_path: "p".into(),
            image_sha256: "0".repeat(64),
            request_cpu: 1.5,
            request_memory: 1024,
            enabled: true,
        },
        T0,
    );
    within(published).await.expect("published");
    let install = JobDocument::InstallService(ServicePackage {
        service_code: "dns".into(),
        target_version: "1.4.2".into(),
        branch: "stable".into(),
        image_path: "p".into(),
        image_sha256: "0".repeat(64),
    });
    assert!(matches!(
        run(&f, task(acme, id, install)).await,
        UpdateResult::Accepted(_)
    ));
    let record = within(f.store.customer_appliance(acme, id))
        .await
        .expect("read")
        .expect("appliance");
    let dns = &record.services[0];
    assert_eq!(
        (dns.version.as_str(), dns.status),
        ("1.4.2", ServiceStatus::Enabled)
    );
    assert_eq!((dns.request_cpu, dns.request_memory), (1.5, 1024));

    let unregister = run(&f, task(acme, id, JobDocument::Unregister {})).await;
    assert!(matches!(unregister, UpdateResult::Accepted(_)));
    let gone = within(f.store.customer_appliance(acme, id))
        .await
        .expect("read");
    assert!(gone.is_none(), "an unregistered appliance is removed");
}

#[tokio::test]
async fn a_task_refused_while_one_is_open_writes_nothing() {
    let f = Fixture::new();
    let acme = customer(&f).await;
    let id = registered(&f, acme).await;
    let mut first = task(acme, id, JobDocument::CollectMetrics {});
    first.unless_open = vec![TaskType::CollectMetrics];
    within(f.store.create_task(first.clone()))
        .await
        .expect("first");
    let other = customer(&f).await;
    let before = within(f.store.fingerprint()).await.expect("fingerprint");
    let refused = within(f.store.create_task(first)).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    let not_theirs = within(
        f.store
            .create_task(task(other, id, JobDocument::CollectMetrics {})),
    )
    .await;
    assert!(matches!(not_theirs, Err(StoreError::UnknownAppliances(_))));
    let after = within(f.store.fingerprint()).await.expect("fingerprint");
    assert_eq!(before, after);
}

fn sample(time: i64) -> MetricsParams {
    MetricsParams {
        time,
        cpu: CpuMetrics {
            cores: 4,
            usage_percent: 1.0,
        },
        memory: MemoryMetrics {
            total_bytes: 2,
            used_bytes: 1,
        },
        storage: Vec::new(),
    }
}

#[tokio::test]
async fn metrics_keep_the_latest_and_a_week_of_samples() {
    let f = Fixture::new();
    let acme = customer(&f).await;
    let id = registered(&f, acme).await;
    let day = 24 * 3600 * 1000;
    for at in [T0, T0 + day, T0 + RETENTION_MS + day] {
        let recorded = within(f.store.record_metrics(id, sample(at), at)).await;
        assert_eq!(recorded.ok(), Some(true));
    }
    assert_eq!(within(f.store.metrics_samples(id)).await.ok(), Some(2));
    let record = within(f.store.customer_appliance(acme, id))
        .await
        .expect("read")
        .expect("appliance");
    assert_eq!(
        record.metrics.map(|m| m.time),
        Some(T0 + RETENTION_MS + day)
    );
    let unknown = within(
        f.store
            .record_metrics(ApplianceId::new_random(), sample(T0), T0),
    )
    .await;
    assert_eq!(unknown.ok(), Some(false));
}

fn upgrade_to(version: &str) -> JobDocument {
    JobDocument::UpgradeAppliance {
        target_version: version.into(),
        firmware_path: "firmware/va.img".into(),
        firmware_sha256: "0".repeat(64),
    }
}

/// Creates and releases an upgrade to 3.2.0; the update `report` ends it.
async fn upgrade(
    f: &Fixture,
    customer: CustomerId,
    id: ApplianceId,
    status: ReportedStatus,
    version: Option<&str>,
) -> UpdateResult {
    let created = within(f.store.create_task(task(customer, id, upgrade_to("3.2.0"))))
        .await
        .expect("task");
    f.release(created.job_id, 10).await;
    let mut report = update(&created.task_id, status);
    report.result = version.map(|v| {
        let mut result = serde_json::Map::new();
        result.insert("version".into(), v.into());
        result
    });
    within(f.store.record_update(id, report, T0 + 20))
        .await
        .expect("update")
}

#[tokio::test]
async fn an_upgrade_succeeds_on_its_target_and_a_rollback_marks_the_appliance() {
    let f = Fixture::new();
    let acme = customer(&f).await;
    let id = registered(&f, acme).await;
    let appliance = || async {
        within(f.store.customer_appliance(acme, id))
            .await
            .expect("read")
            .expect("appliance")
    };

    let bare = upgrade(&f, acme, id, ReportedStatus::Succeeded, None).await;
    assert!(matches!(bare, UpdateResult::Invalid(_)), "{bare:?}");

    let back = upgrade(&f, acme, id, ReportedStatus::Succeeded, Some("3.1.4")).await;
    let UpdateResult::Accepted(reply) = back else {
        panic!("{back:?}")
    };
    assert_eq!(reply.status, protocol::ExecutionStatus::Failed);
    let record = appliance().await;
    assert!(record.rolled_back);
    assert_eq!(record.version.as_deref(), Some("3.1.4"));

    let plain = upgrade(&f, acme, id, ReportedStatus::Failed, None).await;
    assert!(matches!(plain, UpdateResult::Accepted(_)));
    assert!(
        appliance().await.rolled_back,
        "a plain failure keeps the mark"
    );

    let done = upgrade(&f, acme, id, ReportedStatus::Succeeded, Some("3.2.0")).await;
    let UpdateResult::Accepted(reply) = done else {
        panic!("{done:?}")
    };
    assert_eq!(reply.status, protocol::ExecutionStatus::Succeeded);
    let record = appliance().await;
    assert!(!record.rolled_back, "on its target, the mark is gone");
    assert_eq!(record.version.as_deref(), Some("3.2.0"));
}

/// The customer's appliance list reads its page in index order, either
/// way round, without sorting every appliance of the customer.
#[tokio::test]
async fn the_appliance_list_reads_its_page_in_index_order() {
    let f = Fixture::new();
    for descending in [false, true] {
        let paging = Paging {
            offset: 0,
            limit: 50,
            descending,
            sort: "coalesce(a.registered_at, a.created_at)",
        };
        let (_, page) = crate::store::fleet::customer_appliances_sql(&paging);
        let plan = within(f.store.read(move |conn| {
            let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {page}"))?;
            let mut rows = statement.query(rusqlite::params!["c", None::<i64>, None::<String>])?;
            let mut plan = String::new();
            while let Some(row) = rows.next()? {
                plan.push_str(&row.get::<_, String>(3)?);
                plan.push('\n');
            }
            Ok(plan)
        }))
        .await
        .expect("plan");
        assert!(
            plan.contains("INDEX appliances_by_customer_registered")
                && !plan.contains("TEMP B-TREE"),
            "page ({descending}): {plan}"
        );
    }
}
