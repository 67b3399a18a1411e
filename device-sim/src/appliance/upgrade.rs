//! The firmware upgrade's end: the "reboot" (offline for a while), the
//! boot into the new version or back into the old one (rollback), and the
//! resumption of a download a crash cut short.

use protocol::{JobDocument, ReportedStatus};
use serde_json::json;

use super::task::{report, version_result, Phase};
use super::transfer::download;
use super::{Action, Appliance, Now, Record};

impl Appliance {
    /// Back from the reboot: the new firmware runs, or the old one did not
    /// let go (rollback).
    fn boot(&mut self, now: Now, out: &mut Vec<Action>) {
        let Some(exec) = self.current.take() else {
            return;
        };
        let JobDocument::UpgradeAppliance { target_version, .. } = &exec.task.job_document else {
            return;
        };
        let report = if exec.fate.rollback {
            out.push(Action::Record(Record::Rollback));
            let mut report = report(
                &exec.task.task_id,
                ReportedStatus::Failed,
                None,
                exec.arrived,
            );
            report.params.error_message = Some(format!(
                "rolled back: came back on {} instead of {target_version}",
                self.machine.version
            ));
            let mut result = version_result(&self.machine.version, false);
            result.insert("rolledBack".into(), json!(true));
            report.params.result = Some(result);
            report
        } else {
            self.machine.version.clone_from(target_version);
            let mut report = report(
                &exec.task.task_id,
                ReportedStatus::Succeeded,
                Some(100),
                exec.arrived,
            );
            report.params.result = Some(version_result(target_version, true));
            report
        };
        self.queue_final(report, out);
        self.start_backlog(now, out);
    }

    /// Called on every CONNACK: boot after a reboot, resume a cut download.
    pub(super) fn resume_after_connect(&mut self, now: Now, out: &mut Vec<Action>) {
        let Some(exec) = self.current.as_mut() else {
            return;
        };
        match exec.phase {
            Phase::Booting => self.boot(now, out),
            Phase::Downloading {
                reported,
                interrupted: true,
            } => {
                exec.phase = Phase::Downloading {
                    reported,
                    interrupted: false,
                };
                if let Some(file) = &exec.task.job_file {
                    out.push(Action::Download(download(
                        &exec.task.task_id,
                        file,
                        &exec.fate,
                        true,
                    )));
                }
            }
            _ => {}
        }
    }

    pub(super) fn is_rebooting(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|e| matches!(e.phase, Phase::Rebooting | Phase::Booting))
    }
}
