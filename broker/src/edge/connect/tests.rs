//! Unit tests of CONNECT framing and checks.

use super::*;
use rumqttc::mqttbytes::v4::Packet;

const ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
const MAX: usize = 64 * 1024;

fn encode(connect: Connect) -> BytesMut {
    let mut buf = BytesMut::new();
    Packet::Connect(connect)
        .write(&mut buf, MAX)
        .expect("encodable");
    buf
}

fn device(id: &str) -> Connect {
    let mut c = Connect::new(id);
    c.keep_alive = 60;
    c.set_login(id, "token");
    c
}

fn check(connect: Connect) -> Result<DeviceConnect, Refusal> {
    check_connect(connect, &ProductKey::default(), &(5..=1200))
}

fn code(result: Result<DeviceConnect, Refusal>) -> Option<u8> {
    match result {
        Err(Refusal::Answer { bytes, .. }) => bytes.get(3).copied(),
        _ => None,
    }
}

#[test]
fn frames_a_valid_connect_and_keeps_what_follows() {
    let mut buf = encode(device(ID));
    buf.extend_from_slice(&[0xC0, 0x00]); // a PINGREQ right behind
    let Ok(Framed::Connect(connect)) = frame_connect(&mut buf, MAX) else {
        panic!("expected a CONNECT");
    };
    assert_eq!(&buf[..], &[0xC0, 0x00]);
    let ok = check(connect).expect("valid");
    assert_eq!(ok.appliance_id.to_string(), ID);
    assert_eq!(ok.password.as_deref(), Some(&b"token"[..]));
    assert!(ok.has_username);
}

#[test]
fn every_truncation_is_incomplete_never_a_panic() {
    let full = encode(device(ID));
    for len in 0..full.len() {
        let mut buf = BytesMut::from(&full[..len]);
        assert!(matches!(
            frame_connect(&mut buf, MAX),
            Ok(Framed::Incomplete)
        ));
    }
}

#[test]
fn mqtt5_gets_0x84_and_old_levels_get_0x01() {
    let v5 = [
        0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0, 2, b'a', b'b',
    ];
    let mut buf = BytesMut::from(&v5[..]);
    let refusal = frame_connect(&mut buf, MAX).expect_err("refused");
    assert_eq!(
        refusal,
        Refusal::Answer {
            bytes: CONNACK_V5_UNSUPPORTED.to_vec(),
            reason: "MQTT 5 is not supported"
        }
    );
    let v31 = [
        0x10, 16, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 2, b'a', b'b',
    ];
    let mut buf = BytesMut::from(&v31[..]);
    match frame_connect(&mut buf, MAX) {
        Err(Refusal::Answer { bytes, .. }) => {
            assert_eq!(bytes, connack_v4(ConnackCode::UnacceptableProtocol))
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn non_connect_garbage_and_oversize_are_closed_unanswered() {
    let tls_client_hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00];
    let publish_first = [0x30, 0x05, 0x00, 0x01, b'a', b'x', b'y'];
    let reserved_flag = {
        let mut b = encode(device(ID));
        b[9] |= 0x01; // connect flags byte: 2 header + 6 name + 1 level
        b
    };
    for bytes in [
        &tls_client_hello[..],
        &publish_first[..],
        &reserved_flag[..],
        &[0xFF; 8][..],
    ] {
        let mut buf = BytesMut::from(bytes);
        assert!(
            matches!(frame_connect(&mut buf, MAX), Err(Refusal::Close(_))),
            "{bytes:?}"
        );
    }
    let mut big = device(ID);
    big.login = Some(rumqttc::mqttbytes::v4::Login::new(ID, "x".repeat(2000)));
    let mut buf = encode(big);
    assert!(matches!(
        frame_connect(&mut buf, 1024),
        Err(Refusal::Close(_))
    ));
}

#[test]
fn client_id_must_be_an_appliance_id() {
    for bad in [
        "",
        "a/b",
        "dev+1",
        "#",
        "$sys",
        "with space",
        "0F8FAD5B-D9CB-469F-A165-70867728950E",
    ] {
        let mut c = device(ID);
        c.client_id = bad.to_owned();
        assert_eq!(code(check(c)), Some(0x02), "{bad}");
    }
}

#[test]
fn username_must_equal_client_id() {
    let mut c = device(ID);
    c.set_login("6b1d8f4c-1c0e-4a53-9f69-1f1e4c1b2a3d", "token");
    assert_eq!(code(check(c)), Some(0x04));
    let mut no_login = device(ID);
    no_login.login = None;
    let ok = check(no_login).expect("credentials are checked later");
    assert!(!ok.has_username && ok.password.is_none());
}

#[test]
fn keepalive_is_bounded() {
    for (keep_alive, ok) in [
        (0, false),
        (4, false),
        (5, true),
        (1200, true),
        (1201, false),
    ] {
        let mut c = device(ID);
        c.keep_alive = keep_alive;
        assert_eq!(check(c).is_ok(), ok, "{keep_alive}");
    }
}

#[test]
fn will_is_checked_like_a_publish() {
    let own = format!("/sys/va/{ID}/thing/job/update");
    let mut c = device(ID);
    c.last_will = Some(LastWill::new(own.clone(), "bye", QoS::AtLeastOnce, true));
    let ok = check(c).expect("own topic");
    assert!(ok.will.is_some_and(|w| !w.retain));

    for (topic, qos) in [
        (
            "/sys/va/6b1d8f4c-1c0e-4a53-9f69-1f1e4c1b2a3d/thing/job/update".to_owned(),
            QoS::AtLeastOnce,
        ),
        (format!("/sys/va/{ID}/thing/job/notify"), QoS::AtLeastOnce),
        (own, QoS::ExactlyOnce),
    ] {
        let mut c = device(ID);
        c.last_will = Some(LastWill::new(topic, "bye", qos, false));
        assert_eq!(code(check(c)), Some(0x05));
    }
}
