//! CONNECT checks and authentication at the edge, seen from paho and
//! mosquitto clients: every refusal gets its CONNACK code and the listener
//! keeps serving others.

use anyhow::Result;
use broker::certs::issue_client_cert;
use broker::edge::AuthMode;
use rumqttc::mqttbytes::v4::ConnectReturnCode;

use crate::fleet::{Appliance, Fleet};
use crate::tools::{mosquitto_args, paho_args, Tool};

/// CONNACK code paho saw for one connection attempt.
async fn connack(fleet: &Fleet, id: &str, user: &str, password: &str, v5: bool) -> Result<String> {
    let mut args = paho_args(fleet.tls_port(), &fleet.ca(), id, user, password);
    if v5 {
        args.push("--v5".into());
    }
    let (_, lines, stderr) = Tool::paho("connect_probe.py", &args)?.finish().await?;
    lines
        .into_iter()
        .find(|l| l.starts_with("RC ") || l == "NO CONNACK")
        .ok_or_else(|| anyhow::anyhow!("no result from connect_probe: {stderr}"))
}

#[tokio::test]
async fn refusals_get_the_matching_connack_code() -> Result<()> {
    let fleet = Fleet::start(2).await?;
    let (a, b) = (fleet.appliances[0].clone(), fleet.appliances[1].clone());
    let (ida, idb) = (a.id.to_string(), b.id.to_string());
    let unknown = protocol::ApplianceId::new_random().to_string();
    let cases = [
        (
            "right token",
            ida.as_str(),
            ida.as_str(),
            a.token.as_str(),
            "RC 0",
        ),
        ("wrong password", &ida, &ida, "not-the-token", "RC 4"),
        ("another appliance's token", &ida, &ida, &b.token, "RC 4"),
        ("client id != username", &ida, &idb, &b.token, "RC 4"),
        ("unknown appliance", &unknown, &unknown, "whatever", "RC 4"),
        (
            "client id not an appliance id",
            "not-a-uuid",
            "not-a-uuid",
            "x",
            "RC 2",
        ),
    ];
    // Independent connections: run them side by side.
    let results = futures::future::join_all(
        cases
            .iter()
            .map(|(_, id, user, password, _)| connack(&fleet, id, user, password, false)),
    )
    .await;
    for ((case, .., expected), result) in cases.iter().zip(results) {
        assert_eq!(result?, *expected, "{case}");
    }
    Ok(())
}

#[tokio::test]
async fn a_client_id_with_a_slash_twice_is_refused_and_the_listener_keeps_serving() -> Result<()> {
    let fleet = Fleet::start(1).await?;
    let a = fleet.appliances[0].clone();
    let id = a.id.to_string();
    let slashed = format!("{id}/x");
    for _ in 0..2 {
        assert_eq!(
            connack(&fleet, &slashed, &slashed, &a.token, false).await?,
            "RC 2"
        );
    }
    assert_eq!(connack(&fleet, &id, &id, &a.token, false).await?, "RC 0");
    Ok(())
}

#[tokio::test]
async fn mqtt5_with_properties_is_refused_and_does_not_disturb_v311_appliances() -> Result<()> {
    let fleet = Fleet::start(2).await?;
    let (a, b) = (fleet.appliances[0].clone(), fleet.appliances[1].clone());
    let ida = a.id.to_string();
    let mut hub = fleet.hub("hub-v5").await?;
    hub.subscribe(&["/sys/+/+/thing/job/update"]).await?;
    let mut v311 = fleet.tls().await?;
    let ack = v311.handshake(&ida, Some((&ida, &a.token)), true).await?;
    assert_eq!(ack.code, ConnectReturnCode::Success);

    let idb = b.id.to_string();
    assert_eq!(connack(&fleet, &idb, &idb, &b.token, true).await?, "RC 132");
    let mut args = mosquitto_args(fleet.tls_port(), &fleet.ca(), &idb, &idb, &b.token);
    args.splice(args.len() - 2..args.len() - 1, ["mqttv5".to_owned()]);
    args.extend(["-D", "connect", "user-property", "k", "v", "-t"].map(String::from));
    args.extend([b.topic("job/update"), "-m".into(), "v5".into()]);
    let (status, _, _) = Tool::spawn("mosquitto_pub", &args)?.finish().await?;
    assert!(!status.success(), "an MQTT 5 client must be refused");

    v311.publish(&a.topic("job/update"), b"still fine").await?;
    let got = hub.recv_publish().await?;
    assert_eq!(&got.payload[..], b"still fine");
    assert_eq!(connack(&fleet, &idb, &idb, &b.token, false).await?, "RC 0");
    Ok(())
}

fn cert_args(
    fleet: &Fleet,
    a: &Appliance,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Vec<String> {
    let id = a.id.to_string();
    let port = fleet.tls_port().to_string();
    let ca = fleet.ca().display().to_string();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let args = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "--cafile",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "-i",
        &id,
        "-q",
        "1",
        "-V",
        "mqttv311",
        "-t",
    ];
    let mut args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    args.extend([a.topic("job/update"), "-m".into(), "by certificate".into()]);
    args
}

#[tokio::test]
async fn certificate_mode_accepts_the_appliances_own_certificate_only() -> Result<()> {
    let fleet = Fleet::start_with(2, AuthMode::Certificate).await?;
    let (a, b) = (fleet.appliances[0].clone(), fleet.appliances[1].clone());
    let mut hub = fleet.hub("hub-mtls").await?;
    hub.subscribe(&["/sys/+/+/thing/job/update"]).await?;
    let clients = fleet.dir.path().join("clients");
    let (a_cert, a_key) = issue_client_cert(fleet.dir.path(), &a.id)?.write_to(&clients)?;
    let (b_cert, b_key) = issue_client_cert(fleet.dir.path(), &b.id)?.write_to(&clients)?;

    let (status, _, stderr) =
        Tool::spawn("mosquitto_pub", &cert_args(&fleet, &a, &a_cert, &a_key))?
            .finish()
            .await?;
    assert!(status.success(), "own certificate refused: {stderr}");
    assert_eq!(&hub.recv_publish().await?.payload[..], b"by certificate");

    // b's certificate presented with a's client id: CONNACK 0x05.
    let (status, _, stderr) =
        Tool::spawn("mosquitto_pub", &cert_args(&fleet, &a, &b_cert, &b_key))?
            .finish()
            .await?;
    assert!(!status.success());
    assert!(stderr.contains("not authori"), "{stderr}");
    // No certificate at all: TLS fails (at the handshake, or at the first
    // read under TLS 1.3), and no CONNACK ever comes.
    let id = a.id.to_string();
    let outcome = async {
        let mut client = fleet.tls().await?;
        client.handshake(&id, Some((&id, &a.token)), true).await
    }
    .await;
    assert!(outcome.is_err(), "connected without a certificate");
    Ok(())
}
