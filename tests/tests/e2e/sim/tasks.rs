//! Every task type of topics.md, sent by the frontend (`/ui/`) or an
//! operator (`/api/v1/jobs`) to simulated appliances that registered with
//! their customer's register token, runs to SUCCEEDED, and the hub's state
//! shows what it changed: services installed, toggled, configured,
//! upgraded and removed; metrics and grown storage; the uploaded log behind
//! its download link; settings; the new firmware after the reboot; a
//! rotated token; an unregistered appliance gone from the list.

use device_sim::appliance::simulated_log;
use device_sim::fault::FaultConfig;
use device_sim::fleet::Fleet;
use device_sim::identity::IdentityChange;
use device_sim::stats::Counter;
use protocol::ApplianceId;
use reqwest::Method;
use serde_json::{json, Value};
use tests::hub::TestCustomer;
use tests::{wait_until, TestHub};

use super::{
    behaviour, finished, heartbeat, image, job, job_counts, now_ms, publish_firmware, registered,
    start, ui, ui_task, Spy, GIB, NEW_VERSION,
};

/// Publishes service `dns` 1.4.2 and 1.5.0 with their packages.
async fn publish_dns(hub: &TestHub) -> anyhow::Result<()> {
    for (salt, version) in [(1, "1.4.2"), (2, "1.5.0")] {
        let sha = hub
            .upload_artifact(&format!("dns-{version}.tar"), image(64 * 1024, salt))
            .await?;
        let body = json!({"serviceCode": "dns", "version": version, "branch": "stable",
            "imagePath": format!("services/dns/{version}.tar"), "imageSha256": sha,
            "requestCpu": 1.0, "requestMemory": GIB});
        let (status, answer) = hub.post("/api/v1/service-versions", &body).await?;
        assert_eq!(status, 201, "{answer}");
    }
    Ok(())
}

/// The `/ui/` list entry of `id`.
async fn listed(hub: &TestHub, customer: &TestCustomer, id: &str) -> anyhow::Result<Value> {
    let (_, list) = ui(hub, customer, Method::GET, "/ui/appliances/", None).await?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    Ok(items
        .into_iter()
        .find(|item| item["applianceId"] == id)
        .unwrap_or(Value::Null))
}

fn succeeded(view: &Value) {
    assert_eq!(view["status"], "SUCCEEDED", "{view}");
}

/// Install, disable, configure, upgrade and uninstall a service.
async fn services(hub: &TestHub, customer: &TestCustomer, id: &str) -> anyhow::Result<()> {
    let install = json!({"applianceId": id, "version": "1.4.2"});
    succeeded(&ui_task(hub, customer, "/ui/services/dns/install/", Some(install)).await?);
    let entry = listed(hub, customer, id).await?;
    assert_eq!(
        entry["services"],
        json!([{"serviceCode": "dns", "version": "1.4.2", "status": "enabled", "health": null}])
    );
    let toggle = format!("/ui/services/dns/{id}/toggle/");
    succeeded(&ui_task(hub, customer, &toggle, Some(json!({"action": "disable"}))).await?);
    let settings = format!("/ui/services/dns/{id}/settings/");
    let forwarders = json!({"settings": {"forwarders": ["192.0.2.53"]}});
    succeeded(&ui_task(hub, customer, &settings, Some(forwarders)).await?);
    let (_, applied) = ui(hub, customer, Method::GET, &settings, None).await?;
    assert_eq!(applied["settingVersion"], 1, "{applied}");
    let target = json!({"applianceId": id});
    let upgrade = ui_task(
        hub,
        customer,
        "/ui/services/dns/upgrade/",
        Some(target.clone()),
    );
    succeeded(&upgrade.await?);
    let entry = listed(hub, customer, id).await?;
    assert_eq!(entry["services"][0]["version"], "1.5.0", "{entry}");
    assert_eq!(entry["services"][0]["status"], "disabled", "{entry}");
    succeeded(&ui_task(hub, customer, "/ui/services/dns/uninstall/", Some(target)).await?);
    assert_eq!(listed(hub, customer, id).await?["services"], json!([]));
    Ok(())
}

/// Metrics, storage, logs, settings, firmware, heartbeat, token.
async fn machine(
    hub: &TestHub,
    customer: &TestCustomer,
    fleet: &Fleet,
    appliance: ApplianceId,
) -> anyhow::Result<()> {
    let id = appliance.to_string();
    let path = |tail: &str| format!("/ui/appliances/{id}/{tail}/");
    succeeded(&ui_task(hub, customer, &path("metrics"), None).await?);
    wait_until("the metrics sample", || async {
        let (_, storage) = ui(hub, customer, Method::GET, &path("storage"), None).await?;
        Ok(storage["volumes"][0]["totalBytes"] == json!(100 * GIB))
    })
    .await?;
    let extend = json!({"extend": [{"targetVolume": "data", "size": 10 * GIB}]});
    succeeded(&ui_task(hub, customer, &path("storage"), Some(extend)).await?);
    let (_, storage) = ui(hub, customer, Method::GET, &path("storage"), None).await?;
    assert_eq!(
        storage["volumes"][0]["totalBytes"],
        json!(110 * GIB),
        "{storage}"
    );

    let (start, end) = (now_ms() - 3_600_000, now_ms());
    let window = json!({"start": start, "end": end});
    succeeded(&ui_task(hub, customer, &path("log"), Some(window)).await?);
    let (_, log) = ui(hub, customer, Method::GET, &path("log"), None).await?;
    let url = log["downloadUrl"].as_str().unwrap_or_default();
    let archive = hub.http().get(url).send().await?;
    assert_eq!(archive.status().as_u16(), 200, "{log}");
    let expected = simulated_log(&id, start, end);
    assert!(
        archive.bytes().await?.as_ref() == expected,
        "the uploaded log"
    );

    let settings = json!({"timeZone": "Europe/Berlin"});
    succeeded(&ui_task(hub, customer, &path("settings"), Some(settings)).await?);
    let (_, settings) = ui(hub, customer, Method::GET, &path("settings"), None).await?;
    assert_eq!(settings["timeZone"], "Europe/Berlin", "{settings}");

    // The firmware: downloaded, checked, rebooted into, reported.
    let upgrade = ui_task(hub, customer, &path("upgrade"), None).await?;
    assert_eq!(upgrade["result"]["version"], NEW_VERSION, "{upgrade}");
    succeeded(&upgrade);
    assert_eq!(listed(hub, customer, &id).await?["version"], NEW_VERSION);
    assert_eq!(fleet.stats().get(Counter::Reboots), 1);
    assert_eq!(fleet.stats().get(Counter::ChecksumMismatches), 0);

    // A heartbeat is answered with the version running now, no services
    // and the appliance's clock (topics.md 5.3).
    let mut spy = Spy::on(hub, appliance).await?;
    let sent = now_ms();
    spy.notify(&heartbeat(appliance, sent)).await?;
    let reply = spy.update(&id).await?;
    let result = &reply["params"]["result"];
    assert_eq!(reply["params"]["status"], "SUCCEEDED", "{reply}");
    assert_eq!(
        (&result["version"], &result["services"]),
        (&json!(NEW_VERSION), &json!([]))
    );
    let clock = result["clock"].as_i64().unwrap_or_default();
    assert!((sent..=now_ms()).contains(&clock), "{reply}");

    // A new token in updateApplianceConfig is the one it keeps.
    let body = json!({"taskType": "updateApplianceConfig",
        "body": {"applianceToken": "rotated-token-0123456789"}});
    let job = job(hub, body, &[appliance]).await?;
    job_counts(hub, &job, &[("SUCCEEDED", 1)]).await?;
    wait_until("the token rotated", || async {
        let changes = fleet.stats().identity_changes();
        Ok(changes
            .values()
            .any(|c| *c == IdentityChange::Token("rotated-token-0123456789".into())))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_type_completes_against_the_hub() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = TestHub::start(dir.path()).await?;
    publish_dns(&hub).await?;
    publish_firmware(&hub, "3.2.0.0", NEW_VERSION, image(256 * 1024, 3)).await?;
    let (customer, identities) = registered(&hub, 3).await?;
    let fleet = start(&hub, &identities, behaviour(FaultConfig::default()), 1).await?;
    let [a, b, c] = [0, 1, 2].map(|i| identities.appliances[i].appliance_id);

    let a = a.to_string();
    let unregister = async {
        let path = format!("/ui/appliances/{c}/");
        let (status, answer) = ui(&hub, &customer, Method::DELETE, &path, None).await?;
        assert_eq!(status, 202, "{answer}");
        let task = answer["taskId"].as_str().unwrap_or_default();
        succeeded(&finished(&hub, &customer, task).await?);
        anyhow::Ok(())
    };
    tokio::try_join!(
        services(&hub, &customer, &a),
        machine(&hub, &customer, &fleet, b),
        unregister,
    )?;
    let (_, list) = ui(&hub, &customer, Method::GET, "/ui/appliances/", None).await?;
    assert_eq!(list["total"], 2, "the unregistered one is gone: {list}");
    assert_eq!(
        fleet.stats().identity_changes().get(&2),
        Some(&IdentityChange::Forgotten)
    );

    let stats = fleet.stop().await;
    assert_eq!(stats.get(Counter::Unregistered), 1);
    assert_eq!(stats.get(Counter::Failed) + stats.get(Counter::Rejected), 0);
    assert_eq!(stats.get(Counter::GaveUp), 0);
    let by_type: std::collections::BTreeMap<_, _> = stats
        .tasks_by_type()
        .into_iter()
        .map(|(t, n)| (t.as_str(), n))
        .collect();
    for task_type in protocol::TaskType::ALL {
        assert!(
            by_type[task_type.as_str()] >= 1,
            "{task_type:?} ran: {by_type:?}"
        );
    }
    hub.stop().await;
    Ok(())
}
