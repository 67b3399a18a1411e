//! Keeps `topics.md` honest.
//!
//! Every fenced block of `topics.md` whose info string starts with `json`
//! must name the type it shows (`json notify`, `json get`, `json get_reply`,
//! `json update`, `json update heartbeat`, `json update_reply`,
//! `json metrics`, `json job_document`). Each is decoded with the crate's
//! decoder for that type, serialized again, and must give back the same JSON
//! value, so a field cannot be renamed, added or dropped on one side only.
//! On top of that the test requires a minimum number of examples per type,
//! every task type, reply code, reported status and get target, and the
//! topic strings, statuses and limits the prose states.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use protocol::message::{
    decode_get, decode_get_reply, decode_metrics, decode_notify, decode_update,
    decode_update_reply, GetReplyData, GetTarget, HeartbeatResult, Reply, Task, UpdateReplyData,
    MAX_MESSAGE_LEN, MAX_PROGRESS, MAX_STATUS_DETAILS, MAX_TOKEN_LEN,
};
use protocol::topic::{device_filters, hub_filters};
use protocol::{
    ApplianceId, ExecutionStatus, JobDocument, MessageKind, ProductKey, ProtocolError, ReplyCode,
    ReportedStatus, TaskType, DEFAULT_PRODUCT_KEY, PROTOCOL_VERSION,
};
use serde::Serialize;
use serde_json::Value;

/// The appliance every example of topics.md belongs to.
const EXAMPLE_APPLIANCE: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
/// The shared-subscription group topics.md uses in its example.
const EXAMPLE_SHARE_GROUP: &str = "fleethub";
/// The three 409 messages, exactly (hub::engine::RejectionKind::message).
const CONFLICTS: [&str; 3] = [
    "invalid state transition",
    "version mismatch",
    "terminal state reached",
];
/// Invalid requests whose decoder message topics.md shows in a 400 reply.
const INVALID_REQUESTS: [&str; 2] = [
    "hello",
    r#"{"id":"u-6","version":"1.0","params":{"taskId":"3b241101-e2bb-4255-8caf-4136c566a962","status":"IN_PROGRESS","progress":150}}"#,
];

/// The type a fenced block claims to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tag {
    Notify,
    Get,
    GetReply,
    Update,
    UpdateReply,
    Metrics,
    JobDocument,
}

impl Tag {
    const ALL: [Tag; 7] = [
        Self::Notify,
        Self::Get,
        Self::GetReply,
        Self::Update,
        Self::UpdateReply,
        Self::Metrics,
        Self::JobDocument,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Notify => "notify",
            Self::Get => "get",
            Self::GetReply => "get_reply",
            Self::Update => "update",
            Self::UpdateReply => "update_reply",
            Self::Metrics => "metrics",
            Self::JobDocument => "job_document",
        }
    }

    /// How many examples topics.md holds at least; deleting one fails.
    fn min_count(self) -> usize {
        match self {
            Self::Notify => 4,
            Self::Get => 5,
            Self::GetReply => 6,
            Self::Update => 7,
            Self::UpdateReply => 13,
            Self::Metrics => 1,
            Self::JobDocument => TaskType::ALL.len(),
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tagged JSON block.
#[derive(Debug)]
struct Example {
    tag: Tag,
    /// `json update heartbeat`: `params.result` is a `HeartbeatResult`.
    heartbeat: bool,
    /// Line of the opening fence, for messages.
    line: usize,
    body: String,
}

/// A fenced block being read: what it is (`None`: not JSON), the line of
/// its opening fence, its text so far.
struct Block {
    kind: Option<(Tag, bool)>,
    line: usize,
    body: String,
}

/// Reads every fenced block. Untagged or unknown JSON blocks are errors.
fn extract(markdown: &str) -> Result<Vec<Example>, String> {
    let mut examples = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in markdown.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        let Some(mut block) = open.take() else {
            if let Some(info) = trimmed.strip_prefix("```") {
                let kind = classify(info, number)?;
                open = Some(Block {
                    kind,
                    line: number,
                    body: String::new(),
                });
            }
            continue;
        };
        if !trimmed.starts_with("```") {
            block.body.push_str(line);
            block.body.push('\n');
            open = Some(block);
            continue;
        }
        if trimmed.trim_end() != "```" {
            return Err(format!("line {number}: a closing fence has text after it"));
        }
        match block.kind {
            Some((tag, heartbeat)) => examples.push(Example {
                tag,
                heartbeat,
                line: block.line,
                body: block.body,
            }),
            None if block.body.trim_start().starts_with(['{', '[']) => {
                return Err(format!(
                    "line {}: a block that looks like JSON must be `json <type>`",
                    block.line
                ));
            }
            None => {}
        }
    }
    match open {
        Some(block) => Err(format!("line {}: fence never closed", block.line)),
        None => Ok(examples),
    }
}

/// The meaning of an opening fence's info string: `None` for a block that
/// is not JSON, the tag (and heartbeat qualifier) for `json <type>`.
fn classify(info: &str, line: usize) -> Result<Option<(Tag, bool)>, String> {
    let mut words = info.split_whitespace();
    match words.next() {
        Some("json") => {}
        Some(word) if word.starts_with("json") => {
            return Err(format!("line {line}: unknown info string `{word}`"));
        }
        _ => return Ok(None),
    }
    let Some(name) = words.next() else {
        return Err(format!(
            "line {line}: plain `json` block; name its type (`json notify`, ...)"
        ));
    };
    let Some(tag) = Tag::ALL.into_iter().find(|tag| tag.name() == name) else {
        return Err(format!("line {line}: unknown tag `{name}`"));
    };
    let heartbeat = match words.next() {
        None => false,
        Some("heartbeat") if tag == Tag::Update => true,
        Some(word) => return Err(format!("line {line}: unexpected `{word}` after `{name}`")),
    };
    match words.next() {
        Some(word) => Err(format!("line {line}: unexpected `{word}` in info string")),
        None => Ok(Some((tag, heartbeat))),
    }
}

/// What the examples cover, gathered while checking them.
#[derive(Debug, Default)]
struct Coverage {
    counts: BTreeMap<Tag, usize>,
    task_types: BTreeSet<TaskType>,
    reply_codes: HashSet<ReplyCode>,
    conflicts: BTreeSet<&'static str>,
    reported: HashSet<ReportedStatus>,
    notify_statuses: BTreeSet<ExecutionStatus>,
    facts: BTreeSet<&'static str>,
}

/// Decodes, re-serializes and compares with the documented JSON.
fn round_trip<T: Serialize>(
    example: &Example,
    original: &Value,
    decoded: Result<T, ProtocolError>,
) -> Result<T, String> {
    let decoded = decoded.map_err(|err| {
        format!(
            "line {}: `json {}` example does not decode: {err}",
            example.line, example.tag
        )
    })?;
    let again = serde_json::to_value(&decoded)
        .map_err(|err| format!("line {}: cannot serialize: {err}", example.line))?;
    if &again != original {
        return Err(format!(
            "line {}: `json {}` example changes in a round trip\n  documented:    {original}\n  re-serialized: {again}",
            example.line, example.tag
        ));
    }
    Ok(decoded)
}

fn check(example: &Example, coverage: &mut Coverage) -> Result<(), String> {
    let original: Value = serde_json::from_str(&example.body)
        .map_err(|err| format!("line {}: not JSON: {err}", example.line))?;
    let bytes = example.body.as_bytes();
    *coverage.counts.entry(example.tag).or_default() += 1;
    let at = |what: String| format!("line {}: {what}", example.line);
    match example.tag {
        Tag::Notify => check_notify(
            round_trip(example, &original, decode_notify(bytes))?,
            coverage,
        ),
        Tag::Get => {
            let get = round_trip(example, &original, decode_get(bytes))?;
            coverage.facts.insert(match get.params.task_id {
                GetTarget::Next => "get $next",
                GetTarget::List => "get $list",
                GetTarget::Task(_) => "get by id",
            });
            Ok(())
        }
        Tag::GetReply => check_get_reply(
            round_trip(example, &original, decode_get_reply(bytes))?,
            coverage,
        ),
        Tag::Update => {
            let update = round_trip(example, &original, decode_update(bytes))?;
            let params = &update.params;
            coverage.reported.insert(params.status);
            if params.expected_version.is_some() && params.client_token.is_some() {
                coverage
                    .facts
                    .insert("update with expectedVersion and clientToken");
            }
            if example.heartbeat {
                check_heartbeat_update(example, &original, params, coverage)?;
            }
            Ok(())
        }
        Tag::UpdateReply => check_update_reply(
            round_trip(example, &original, decode_update_reply(bytes))?,
            coverage,
        ),
        Tag::Metrics => round_trip(example, &original, decode_metrics(bytes)).map(drop),
        Tag::JobDocument => {
            let document = round_trip(
                example,
                &original,
                JobDocument::from_value(original.clone()),
            )?;
            coverage.task_types.insert(document.task_type());
            Ok(())
        }
    }
    .map_err(|err| {
        if err.starts_with("line ") {
            err
        } else {
            at(err)
        }
    })
}

fn check_notify(notify: protocol::message::Notify, coverage: &mut Coverage) -> Result<(), String> {
    let expected = MessageKind::JobNotify.method();
    if notify.method.as_deref() != Some(expected) {
        return Err(format!("notify must carry method `{expected}`"));
    }
    let task = &notify.params.task;
    if !matches!(
        task.status,
        ExecutionStatus::Sent | ExecutionStatus::Canceled
    ) {
        return Err(format!(
            "notify carries only SENT or CANCELED, not {}",
            task.status
        ));
    }
    coverage.notify_statuses.insert(task.status);
    check_job_file(task)?;
    match (&task.job_document, &task.job_file) {
        (JobDocument::Heartbeat { server_time }, _) => {
            check_heartbeat_task(task, *server_time)?;
            coverage.facts.insert("heartbeat notify");
        }
        (_, Some(_)) => {
            coverage.facts.insert("notify with jobFile");
        }
        (_, None) if task.status == ExecutionStatus::Sent => {
            coverage.facts.insert("notify SENT without jobFile");
        }
        (_, None) => {}
    }
    Ok(())
}

fn check_heartbeat_task(task: &Task, server_time: i64) -> Result<(), String> {
    let ok = task.task_id.as_str().parse::<ApplianceId>().is_ok()
        && task.status == ExecutionStatus::Sent
        && task.execution_number == 1
        && task.version_number == 1
        && task.queued_at == server_time;
    if ok {
        Ok(())
    } else {
        Err(
            "a heartbeat task is SENT, taskId = applianceId, executionNumber 1, \
             versionNumber 1, queuedAt = serverTime"
                .into(),
        )
    }
}

/// `jobFile` is present exactly for SENT or IN_PROGRESS tasks that download
/// an image, and signs the document's digest.
fn check_job_file(task: &Task) -> Result<(), String> {
    let digest = match &task.job_document {
        JobDocument::UpgradeAppliance {
            firmware_sha256, ..
        } => Some(firmware_sha256),
        JobDocument::InstallService(package) | JobDocument::UpgradeService(package) => {
            Some(&package.image_sha256)
        }
        _ => None,
    };
    let live = matches!(
        task.status,
        ExecutionStatus::Sent | ExecutionStatus::InProgress
    );
    match (digest.filter(|_| live), &task.job_file) {
        (Some(digest), Some(file)) if &file.sign == digest => Ok(()),
        (Some(_), Some(_)) => Err("jobFile.sign must equal the document's sha256".into()),
        (Some(_), None) => Err(format!("task {} needs a jobFile", task.task_id)),
        (None, Some(_)) => Err(format!("task {} must not carry a jobFile", task.task_id)),
        (None, None) => Ok(()),
    }
}

fn check_heartbeat_update(
    example: &Example,
    original: &Value,
    params: &protocol::message::UpdateParams,
    coverage: &mut Coverage,
) -> Result<(), String> {
    if params.task_id.as_str().parse::<ApplianceId>().is_err()
        || params.status != ReportedStatus::Succeeded
    {
        return Err("a heartbeat update is SUCCEEDED with taskId = applianceId".into());
    }
    let result = original["params"]["result"].clone();
    let typed = serde_json::from_value::<HeartbeatResult>(result.clone())
        .map_err(|err| ProtocolError::Json(err.to_string()));
    round_trip(example, &result, typed)?;
    coverage.facts.insert("heartbeat update");
    Ok(())
}

/// Envelope rules shared by both replies: method, version, `data` presence,
/// and the fixed messages.
fn check_reply<D>(reply: &Reply<D>, kind: MessageKind) -> Result<(), String> {
    if reply.method != kind.method() || reply.version != PROTOCOL_VERSION {
        return Err(format!(
            "a {} reply carries method `{}` and version `{PROTOCOL_VERSION}`",
            kind.suffix(),
            kind.method()
        ));
    }
    let with_data = matches!(reply.code, ReplyCode::Ok | ReplyCode::Conflict);
    if reply.data.is_some() != with_data {
        return Err(format!(
            "code {}: data must be {}",
            reply.code,
            if with_data { "an object" } else { "null" }
        ));
    }
    let success = Reply::ok("", kind, ()).message;
    match reply.code {
        ReplyCode::Ok if reply.message != success => {
            Err(format!("a 200 reply's message is `{success}`"))
        }
        ReplyCode::NotFound if reply.message != "unknown task" => {
            Err("a 404 reply's message is `unknown task`".into())
        }
        ReplyCode::BadRequest if !decoder_messages().contains(&reply.message) => Err(format!(
            "400 message `{}` is not what the decoder says for any of INVALID_REQUESTS",
            reply.message
        )),
        _ => Ok(()),
    }
}

fn decoder_messages() -> Vec<String> {
    INVALID_REQUESTS
        .iter()
        .filter_map(|payload| decode_update(payload.as_bytes()).err())
        .map(|err| err.to_string())
        .collect()
}

fn check_get_reply(reply: Reply<GetReplyData>, coverage: &mut Coverage) -> Result<(), String> {
    check_reply(&reply, MessageKind::JobGetReply)?;
    coverage.reply_codes.insert(reply.code);
    match &reply.data {
        _ if reply.code == ReplyCode::Conflict => Err("get is never answered 409".into()),
        Some(GetReplyData::One { task: Some(task) }) => {
            coverage.facts.insert("get_reply with a task");
            check_job_file(task)
        }
        Some(GetReplyData::One { task: None }) => {
            coverage.facts.insert("get_reply with task null");
            Ok(())
        }
        Some(GetReplyData::List { tasks }) => {
            coverage.facts.insert("get_reply with tasks");
            match tasks.iter().find(|t| t.status.is_terminal()) {
                Some(t) => Err(format!(
                    "$list holds only non-terminal tasks, not {}",
                    t.status
                )),
                None => Ok(()),
            }
        }
        None => Ok(()),
    }
}

fn check_update_reply(
    reply: Reply<UpdateReplyData>,
    coverage: &mut Coverage,
) -> Result<(), String> {
    check_reply(&reply, MessageKind::JobUpdateReply)?;
    coverage.reply_codes.insert(reply.code);
    if reply.code == ReplyCode::Conflict {
        let Some(conflict) = CONFLICTS.into_iter().find(|c| *c == reply.message) else {
            return Err(format!(
                "409 message `{}` is none of {CONFLICTS:?}",
                reply.message
            ));
        };
        coverage.conflicts.insert(conflict);
    }
    Ok(())
}

/// Every reply code. The match does not compile once a code is added, so
/// whoever adds one comes here and documents it.
fn every_reply_code() -> Vec<ReplyCode> {
    let codes: Vec<ReplyCode> = (0..=u16::MAX).filter_map(ReplyCode::from_u16).collect();
    for code in &codes {
        match code {
            ReplyCode::Ok
            | ReplyCode::BadRequest
            | ReplyCode::NotFound
            | ReplyCode::Conflict
            | ReplyCode::Throttled
            | ReplyCode::Internal => {}
        }
    }
    codes
}

fn missing_coverage(coverage: &Coverage) -> Vec<String> {
    let mut missing = Vec::new();
    for tag in Tag::ALL {
        let count = coverage.counts.get(&tag).copied().unwrap_or_default();
        if count < tag.min_count() {
            missing.push(format!(
                "{count} `json {tag}` examples, expected at least {}",
                tag.min_count()
            ));
        }
    }
    for task_type in TaskType::ALL
        .into_iter()
        .filter(|t| !coverage.task_types.contains(t))
    {
        missing.push(format!("no `json job_document` example of {task_type}"));
    }
    for code in every_reply_code()
        .into_iter()
        .filter(|c| !coverage.reply_codes.contains(c))
    {
        missing.push(format!("no reply example with code {code}"));
    }
    for conflict in CONFLICTS
        .into_iter()
        .filter(|c| !coverage.conflicts.contains(c))
    {
        missing.push(format!("no 409 example for `{conflict}`"));
    }
    for status in ReportedStatus::ALL
        .into_iter()
        .filter(|s| !coverage.reported.contains(s))
    {
        missing.push(format!("no update example reporting {status}"));
    }
    for status in [ExecutionStatus::Sent, ExecutionStatus::Canceled] {
        if !coverage.notify_statuses.contains(&status) {
            missing.push(format!("no notify example with status {status}"));
        }
    }
    for fact in [
        "get $next",
        "get $list",
        "get by id",
        "get_reply with a task",
        "get_reply with task null",
        "get_reply with tasks",
        "notify with jobFile",
        "notify SENT without jobFile",
        "heartbeat notify",
        "heartbeat update",
        "update with expectedVersion and clientToken",
    ] {
        if !coverage.facts.contains(fact) {
            missing.push(format!("no example of {fact}"));
        }
    }
    missing
}

/// Strings the prose must state because the crate defines them.
fn required_text() -> Vec<String> {
    let appliance: ApplianceId = EXAMPLE_APPLIANCE.parse().expect("valid example appliance");
    let mut text = vec![
        "/sys/{productKey}/{applianceId}/thing/".to_owned(),
        format!("default `{DEFAULT_PRODUCT_KEY}`"),
        format!("exactly `\"{PROTOCOL_VERSION}\"`"),
        format!("1-{MAX_TOKEN_LEN} bytes"),
        format!("at most {MAX_MESSAGE_LEN} bytes"),
        format!("at most {MAX_STATUS_DETAILS} entries"),
        format!("0-{MAX_PROGRESS}"),
    ];
    for kind in MessageKind::ALL {
        text.push(format!("`{}`", kind.suffix()));
        text.push(format!("`{}`", kind.method()));
    }
    text.extend(hub_filters(None));
    text.extend(hub_filters(Some(EXAMPLE_SHARE_GROUP)));
    text.extend(device_filters(&ProductKey::default(), &appliance));
    text.extend(ExecutionStatus::ALL.map(|s| format!("`{s}`")));
    text.extend(TaskType::ALL.map(|t| format!("### {t}")));
    text
}

#[test]
fn every_example_of_topics_md_round_trips_and_everything_is_covered() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../topics.md");
    let markdown = std::fs::read_to_string(path).expect("topics.md at the repository root");
    let examples = extract(&markdown).unwrap_or_else(|err| panic!("topics.md: {err}"));
    let mut coverage = Coverage::default();
    let mut failures: Vec<String> = examples
        .iter()
        .filter_map(|example| check(example, &mut coverage).err())
        .collect();
    failures.extend(missing_coverage(&coverage));
    for text in required_text() {
        if !markdown.contains(&text) {
            failures.push(format!("the prose never states `{text}`"));
        }
    }
    assert!(
        failures.is_empty(),
        "topics.md:\n- {}",
        failures.join("\n- ")
    );
}

#[test]
fn invalid_requests_are_invalid() {
    assert_eq!(decoder_messages().len(), INVALID_REQUESTS.len());
}

#[test]
fn extractor_refuses_what_the_test_could_not_check() {
    let refused = [
        "```json\n{}\n```\n",
        "```json notfy\n{}\n```\n",
        "```jsonc notify\n{}\n```\n",
        "```json notify heartbeat\n{}\n```\n",
        "```json update heartbeat extra\n{}\n```\n",
        "```text\n{\"id\": \"1\"}\n```\n",
        "```\n[1]\n```\n",
        "```json get\n{}\n",
        "```json get\n{}\n``` x\n",
    ];
    for markdown in refused {
        assert!(extract(markdown).is_err(), "{markdown:?}");
    }
    let examples =
        extract("x\n```text\n/sys/+/+/thing/job/get\n```\n  ```json update heartbeat\n{}\n  ```\n")
            .expect("valid markdown");
    assert_eq!(examples.len(), 1);
    assert_eq!(
        (examples[0].tag, examples[0].heartbeat, examples[0].line),
        (Tag::Update, true, 5)
    );
    assert_eq!(examples[0].body, "{}\n");
}
