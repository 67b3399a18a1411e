//! How the hub judges the final report of an upgradeAppliance task
//! (topics.md 7.3): the appliance reports after it rebooted and
//! reconnected, with `result.version` = the display version it runs now.
//!
//! - SUCCEEDED on `targetVersion`: SUCCEEDED.
//! - SUCCEEDED or FAILED on another version: it came back on its old
//!   image, it **rolled back**: FAILED "rolled back", the appliance is
//!   marked rolled back, and the attempt is never retried.
//! - FAILED without `result.version` (or on `targetVersion`): a plain
//!   failure before the reboot, retried as the job's policy says.
//! - SUCCEEDED without `result.version`: refused (400).
//!
//! Pure: [`judge`] decides, [`apply_upgrade_update`] turns the decision
//! into the update the execution really records.

use protocol::message::UpdateParams;
use protocol::ReportedStatus;
use serde_json::{Map, Value};

use super::execution::{apply_update, ExecutionState, Rejection, UpdateOutcome};
use protocol::TaskId;

/// The `errorMessage` of an upgrade attempt that rolled back.
pub const ROLLED_BACK: &str = "rolled back";

/// What an upgradeAppliance report means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeVerdict {
    /// Not a final report (IN_PROGRESS) or a refusal (REJECTED): as reported.
    AsReported,
    /// The appliance runs `targetVersion`.
    Succeeded,
    /// The appliance came back on `version`, not on `targetVersion`.
    RolledBack {
        /// The version it runs now.
        version: String,
    },
    /// It failed before the reboot; its version did not change.
    Failed,
    /// SUCCEEDED without `result.version`: 400.
    MissingVersion,
}

/// The version a result reports, when it is a non-empty string.
pub fn reported_version(result: Option<&Map<String, Value>>) -> Option<&str> {
    result
        .and_then(|r| r.get("version"))
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
}

/// Judges a report of `status` with `result` for an upgrade to `target`.
pub fn judge(
    target: &str,
    status: ReportedStatus,
    result: Option<&Map<String, Value>>,
) -> UpgradeVerdict {
    let version = reported_version(result);
    match (status, version) {
        (ReportedStatus::InProgress | ReportedStatus::Rejected, _) => UpgradeVerdict::AsReported,
        (ReportedStatus::Succeeded, None) => UpgradeVerdict::MissingVersion,
        (ReportedStatus::Succeeded, Some(v)) if v == target => UpgradeVerdict::Succeeded,
        (ReportedStatus::Failed, None) => UpgradeVerdict::Failed,
        (ReportedStatus::Failed, Some(v)) if v == target => UpgradeVerdict::Failed,
        (ReportedStatus::Succeeded | ReportedStatus::Failed, Some(v)) => {
            UpgradeVerdict::RolledBack {
                version: v.to_owned(),
            }
        }
    }
}

/// Why an upgradeAppliance update is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeRefusal {
    /// A 409 of any task (terminal state, version mismatch, transition).
    Rejected(Rejection),
    /// SUCCEEDED without `result.version` (400); nothing changes.
    MissingVersion,
}

/// [`apply_update`] for an upgradeAppliance task to `target`: the same
/// checks first (a repeated clientToken gets its first reply; 409s come
/// before the 400), then the report is judged and a rollback is recorded
/// as FAILED "rolled back" (the reply says FAILED).
pub fn apply_upgrade_update(
    state: &ExecutionState,
    task_id: &TaskId,
    update: &UpdateParams,
    target: &str,
    now: i64,
) -> Result<UpdateOutcome, UpgradeRefusal> {
    let outcome = apply_update(state, task_id, update, now).map_err(UpgradeRefusal::Rejected)?;
    if matches!(outcome, UpdateOutcome::Duplicate { .. }) {
        return Ok(outcome);
    }
    match judge(target, update.status, update.result.as_ref()) {
        UpgradeVerdict::AsReported | UpgradeVerdict::Succeeded | UpgradeVerdict::Failed => {
            Ok(outcome)
        }
        UpgradeVerdict::MissingVersion => Err(UpgradeRefusal::MissingVersion),
        UpgradeVerdict::RolledBack { .. } => {
            let mut rolled_back = update.clone();
            rolled_back.status = ReportedStatus::Failed;
            rolled_back.error_message = Some(ROLLED_BACK.to_owned());
            apply_update(state, task_id, &rolled_back, now).map_err(UpgradeRefusal::Rejected)
        }
    }
}

#[cfg(test)]
mod tests {
    use protocol::ExecutionStatus;
    use serde_json::json;

    use super::*;

    fn result(value: Value) -> Option<Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    #[test]
    fn verdicts() {
        use ReportedStatus as R;
        let rolled = |v: &str| UpgradeVerdict::RolledBack { version: v.into() };
        let cases = [
            (
                R::InProgress,
                json!({"version": "3.1.4"}),
                UpgradeVerdict::AsReported,
            ),
            (R::Rejected, json!(null), UpgradeVerdict::AsReported),
            (
                R::Succeeded,
                json!({"version": "3.2.0"}),
                UpgradeVerdict::Succeeded,
            ),
            (R::Succeeded, json!({"version": "3.1.4"}), rolled("3.1.4")),
            (R::Succeeded, json!(null), UpgradeVerdict::MissingVersion),
            (R::Succeeded, json!({}), UpgradeVerdict::MissingVersion),
            (
                R::Succeeded,
                json!({"version": ""}),
                UpgradeVerdict::MissingVersion,
            ),
            (
                R::Succeeded,
                json!({"version": 3}),
                UpgradeVerdict::MissingVersion,
            ),
            (R::Failed, json!(null), UpgradeVerdict::Failed),
            (
                R::Failed,
                json!({"version": "3.2.0"}),
                UpgradeVerdict::Failed,
            ),
            (R::Failed, json!({"version": "3.1.4"}), rolled("3.1.4")),
        ];
        for (status, value, expect) in cases {
            let result = result(value.clone());
            assert_eq!(
                judge("3.2.0", status, result.as_ref()),
                expect,
                "{status:?} {value}"
            );
        }
    }

    fn update(status: ReportedStatus, value: Value, token: Option<&str>) -> UpdateParams {
        serde_json::from_value(json!({
            "taskId": "3b241101-e2bb-4255-8caf-4136c566a962",
            "status": status,
        }))
        .map(|mut u: UpdateParams| {
            u.result = result(value);
            u.client_token = token.map(str::to_owned);
            u
        })
        .expect("update")
    }

    fn in_progress() -> ExecutionState {
        let mut state = ExecutionState::queued(1, 0);
        state.status = ExecutionStatus::InProgress;
        state.version_number = 6;
        state
    }

    #[test]
    fn rollback_is_recorded_failed_and_replied_failed() {
        let task: TaskId = "3b241101-e2bb-4255-8caf-4136c566a962".parse().expect("id");
        let report = update(
            ReportedStatus::Succeeded,
            json!({"version": "3.1.4"}),
            Some("t"),
        );
        let outcome = apply_upgrade_update(&in_progress(), &task, &report, "3.2.0", 10);
        let Ok(UpdateOutcome::Applied { state, reply }) = outcome else {
            panic!("not applied: {outcome:?}");
        };
        assert_eq!(state.status, ExecutionStatus::Failed);
        assert_eq!(reply.status, ExecutionStatus::Failed);
        assert_eq!(state.error_message.as_deref(), Some(ROLLED_BACK));
        assert_eq!(state.version_number, 7);
        // The repeat gets the same (FAILED) reply.
        let again = apply_upgrade_update(&state, &task, &report, "3.2.0", 11);
        assert_eq!(again, Ok(UpdateOutcome::Duplicate { reply }));
    }

    #[test]
    fn success_needs_a_version_and_conflicts_come_first() {
        let task: TaskId = "3b241101-e2bb-4255-8caf-4136c566a962".parse().expect("id");
        let bare = update(ReportedStatus::Succeeded, json!(null), None);
        assert_eq!(
            apply_upgrade_update(&in_progress(), &task, &bare, "3.2.0", 10),
            Err(UpgradeRefusal::MissingVersion)
        );
        let mut done = in_progress();
        done.status = ExecutionStatus::Succeeded;
        assert!(matches!(
            apply_upgrade_update(&done, &task, &bare, "3.2.0", 10),
            Err(UpgradeRefusal::Rejected(_))
        ));
        let ok = update(ReportedStatus::Succeeded, json!({"version": "3.2.0"}), None);
        let outcome = apply_upgrade_update(&in_progress(), &task, &ok, "3.2.0", 10);
        assert!(matches!(
            outcome,
            Ok(UpdateOutcome::Applied { ref state, .. }) if state.status == ExecutionStatus::Succeeded
        ));
    }
}
