//! Topic authorization through the edge: an appliance reads and writes only
//! its own namespace.

use anyhow::Result;
use broker::edge::{DisconnectReason, PresenceEvent};

use crate::fleet::Fleet;
use crate::tools::{mosquitto_args, paho_args, Tool};

#[tokio::test]
async fn foreign_and_wildcard_subscriptions_are_refused_and_deliver_nothing() -> Result<()> {
    let fleet = Fleet::start(2).await?;
    let (a, b) = (fleet.appliances[0].clone(), fleet.appliances[1].clone());
    let id = a.id.to_string();
    let mut hub = fleet.hub("hub-acl").await?;

    let mut args = paho_args(fleet.tls_port(), &fleet.ca(), &id, &id, &a.token);
    for filter in [
        b.topic("job/notify"),
        "#".into(),
        "/sys/+/+/thing/job/notify".into(),
        a.topic("job/notify"),
    ] {
        args.extend(["--sub".into(), filter]);
    }
    args.extend(["--until".into(), a.topic("job/notify")]);
    let mut probe = Tool::paho("acl_probe.py", &args)?;
    probe.line_where(|l| l == "READY").await?;

    // b's message first: had any refused filter been granted, it would
    // arrive before a's own.
    hub.publish(&b.topic("job/notify"), b"for b only").await?;
    hub.publish(&a.topic("job/notify"), b"for a").await?;
    let (status, lines, stderr) = probe.finish().await?;
    assert!(status.success(), "probe failed: {lines:?} {stderr}");
    let subacks: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("SUBACK "))
        .filter_map(|l| l.rsplit(' ').next())
        .collect();
    assert_eq!(subacks, ["128", "128", "128", "1"]);
    let messages: Vec<&String> = lines.iter().filter(|l| l.starts_with("MSG ")).collect();
    assert_eq!(messages, [&format!("MSG {}", a.topic("job/notify"))]);
    Ok(())
}

#[tokio::test]
async fn mosquitto_sub_to_everything_is_refused() -> Result<()> {
    let fleet = Fleet::start(1).await?;
    let a = fleet.appliances[0].clone();
    let id = a.id.to_string();
    let mut args = mosquitto_args(fleet.tls_port(), &fleet.ca(), &id, &id, &a.token);
    args.extend(["-t".into(), "#".into(), "-W".into(), "10".into()]);
    let mut sub = Tool::spawn_line_buffered("mosquitto_sub", &args)?;
    sub.line_where(|l| l.starts_with("Subscribed (mid: 1): 128"))
        .await?;
    Ok(())
}

#[tokio::test]
async fn publishing_to_another_appliances_update_is_refused_and_never_reaches_the_broker(
) -> Result<()> {
    let mut fleet = Fleet::start(2).await?;
    let (a, b) = (fleet.appliances[0].clone(), fleet.appliances[1].clone());
    let id = a.id.to_string();
    let mut hub = fleet.hub("hub-acl-pub").await?;
    hub.subscribe(&["/sys/+/+/thing/job/update", "/sys/+/+/thing/#"])
        .await?;

    let mut args = mosquitto_args(fleet.tls_port(), &fleet.ca(), &id, &id, &a.token);
    args.extend([
        "-t".into(),
        b.topic("job/update"),
        "-m".into(),
        "forged".into(),
    ]);
    let (status, _, _) = Tool::spawn("mosquitto_pub", &args)?.finish().await?;
    assert!(
        !status.success(),
        "the forged publish must not be acknowledged"
    );
    assert!(matches!(
        fleet.next_presence().await?,
        PresenceEvent::Connected { .. }
    ));
    match fleet.next_presence().await? {
        PresenceEvent::Disconnected { reason, .. } => assert_eq!(
            reason,
            DisconnectReason::ProtocolViolation("PUBLISH to a forbidden topic")
        ),
        other => anyhow::bail!("expected Disconnected, got {other:?}"),
    }

    // The first thing the hub ever receives is a's legitimate update.
    let mut args = mosquitto_args(fleet.tls_port(), &fleet.ca(), &id, &id, &a.token);
    args.extend([
        "-t".into(),
        a.topic("job/update"),
        "-m".into(),
        "genuine".into(),
    ]);
    let (status, _, stderr) = Tool::spawn("mosquitto_pub", &args)?.finish().await?;
    assert!(status.success(), "{stderr}");
    let got = hub.recv_publish().await?;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        (a.topic("job/update").as_str(), &b"genuine"[..])
    );
    Ok(())
}
