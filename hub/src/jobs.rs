//! Creating and canceling jobs: validates what the REST layer parsed, saves
//! it through the store and wakes the scheduler that releases executions.
//!
//! A job has [`Targets`] (appliance ids, a customer, or a tag) and a
//! [`JobPolicy`] (rollout pace and groups, start time and window, abort
//! criteria, timeouts, retries, continuous); [`JobService::create`] is the
//! plain form: listed appliances, everything released at once.

use protocol::{ApplianceId, JobDocument, ProtocolError, TaskType};
use thiserror::Error;

use crate::artifacts::Sha256Digest;
use crate::clock::SharedClock;
use crate::model::{CustomerId, JobId};
use crate::mqtt::outbox::Outbox;
use crate::rollout::{JobPolicy, PolicyError, Targets};
use crate::scheduler::SchedulerHandle;
use crate::store::{
    downloads, GateOpening, NewJob, Store, StoreError, TaskCreated, TaskRequest,
    UPLOAD_PATH_PLACEHOLDER,
};

/// Most appliances one job may target by id.
pub const MAX_TARGETS: usize = 100_000;

/// Why a job request was refused.
#[derive(Debug, Error)]
pub enum JobError {
    /// The document is not valid for its task type.
    #[error("invalid job document: {0}")]
    InvalidDocument(#[from] ProtocolError),
    /// Heartbeats are sent by the hub itself, never queued as jobs.
    #[error("heartbeat tasks are sent by the hub and cannot be queued")]
    HeartbeatNotQueueable,
    /// No appliance to run it on.
    #[error("the job targets no appliance")]
    NoTargets,
    /// More targets than [`MAX_TARGETS`].
    #[error("the job targets {0} appliances; the limit is {MAX_TARGETS}")]
    TooManyTargets(usize),
    /// Some targets do not exist (or are not the caller's).
    #[error("unknown appliances: {0}")]
    UnknownAppliances(String),
    /// The targeted customer does not exist (or is not the caller).
    #[error("unknown customer")]
    UnknownCustomer,
    /// The targeted tag does not exist (by id or name).
    #[error("unknown tag {0}")]
    UnknownTag(String),
    /// The rollout, abort, timeout or retry settings are invalid.
    #[error("invalid policy: {0}")]
    InvalidPolicy(#[from] PolicyError),
    /// The document downloads a file that is not in the artifact store.
    #[error("unknown artifact {0}: upload or register it first")]
    UnknownArtifact(String),
    /// No such job.
    #[error("unknown job")]
    NotFound,
    /// The job is not waiting at a stage gate.
    #[error("the job's rollout is {0}, not STAGE_GATED with a group left to open")]
    NotGated(crate::model::RolloutPhase),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for JobError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::UnknownAppliances(ids) => {
                let shown: Vec<String> = ids.iter().take(10).map(ToString::to_string).collect();
                let more = ids.len().saturating_sub(shown.len());
                let mut text = shown.join(", ");
                if more > 0 {
                    text.push_str(&format!(" and {more} more"));
                }
                Self::UnknownAppliances(text)
            }
            StoreError::UnknownCustomer(_) => Self::UnknownCustomer,
            StoreError::UnknownTag(tag) => Self::UnknownTag(tag),
            other => Self::Store(other),
        }
    }
}

/// A validated request for a new job.
#[derive(Debug, Clone)]
pub struct CreateJob {
    /// The customer whose appliances are targeted, for customer callers.
    pub customer_id: Option<CustomerId>,
    /// What to do.
    pub document: JobDocument,
    /// Where.
    pub targets: Vec<ApplianceId>,
}

/// A validated request for a new job with targets and a policy.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    /// The customer whose appliances are targeted, for customer callers.
    pub customer_id: Option<CustomerId>,
    /// What to do.
    pub document: JobDocument,
    /// Where.
    pub targets: Targets,
    /// How.
    pub policy: JobPolicy,
}

/// Job operations shared by the REST API and the schedulers.
#[derive(Clone)]
pub struct JobService {
    store: Store,
    outbox: Outbox,
    scheduler: SchedulerHandle,
    clock: SharedClock,
}

impl JobService {
    /// The service over its collaborators.
    pub fn new(
        store: Store,
        outbox: Outbox,
        scheduler: SchedulerHandle,
        clock: SharedClock,
    ) -> Self {
        Self {
            store,
            outbox,
            scheduler,
            clock,
        }
    }

    /// Saves a job and its executions (QUEUED) in one transaction and wakes
    /// the scheduler, which releases them.
    pub async fn create(&self, request: CreateJob) -> Result<JobId, JobError> {
        self.create_planned(PlannedJob {
            customer_id: request.customer_id,
            document: request.document,
            targets: Targets::ApplianceIds(request.targets),
            policy: JobPolicy::default(),
        })
        .await
    }

    /// Saves a job with its policy and its executions for the targets as
    /// they are now (QUEUED) in one transaction, and wakes the scheduler,
    /// which releases them as the policy says.
    ///
    /// A task that downloads must name a known artifact; a collectLog
    /// job's `uploadPath` is replaced by each task's own signed upload link.
    pub async fn create_planned(&self, mut request: PlannedJob) -> Result<JobId, JobError> {
        self.check_document(&request.document).await?;
        request.policy.validate(&request.targets)?;
        if let JobDocument::CollectLog { upload_path, .. } = &mut request.document {
            UPLOAD_PATH_PLACEHOLDER.clone_into(upload_path);
        }
        let targets = match request.targets {
            Targets::ApplianceIds(mut ids) => {
                ids.sort_unstable();
                ids.dedup();
                if ids.is_empty() {
                    return Err(JobError::NoTargets);
                }
                if ids.len() > MAX_TARGETS {
                    return Err(JobError::TooManyTargets(ids.len()));
                }
                Targets::ApplianceIds(ids)
            }
            Targets::CustomerId(customer) => {
                if request.customer_id.is_some_and(|caller| caller != customer) {
                    return Err(JobError::UnknownCustomer);
                }
                Targets::CustomerId(customer)
            }
            Targets::Tag(tag) => {
                if tag.is_empty() || tag.len() > crate::rollout::targets::MAX_TAG_LEN {
                    return Err(JobError::UnknownTag(tag));
                }
                Targets::Tag(tag)
            }
        };
        let job_id = JobId::new_random();
        let job = NewJob {
            job_id,
            customer_id: request.customer_id,
            document: request.document,
            targets: Vec::new(),
            now: self.clock.now(),
        };
        self.store
            .create_planned_job(job, targets, request.policy)
            .await?
            .ok_or(JobError::NoTargets)?;
        self.scheduler.wake();
        Ok(job_id)
    }

    /// Creates a customer's task for one of its appliances (a one-target
    /// job) with the checks of [`TaskRequest`], and wakes the scheduler.
    /// Returns the job and the execution's task id. The document is checked
    /// as [`JobService::create`] checks it.
    pub async fn create_task(&self, request: TaskRequest) -> Result<TaskCreated, JobError> {
        self.check_document(&request.document).await?;
        let created = self.store.create_task(request).await?;
        self.scheduler.wake();
        Ok(created)
    }

    /// What every new job's document must pass: valid for its task type,
    /// not a heartbeat, and a task that downloads names a known artifact
    /// (else its notify would go out without a `jobFile`).
    async fn check_document(&self, document: &JobDocument) -> Result<(), JobError> {
        document.validate()?;
        if document.task_type() == TaskType::Heartbeat {
            return Err(JobError::HeartbeatNotQueueable);
        }
        let Some(digest) = downloads(document) else {
            return Ok(());
        };
        let known = match digest.parse::<Sha256Digest>() {
            Ok(sha256) => self.store.artifact(&sha256).await?.is_some(),
            Err(_) => false,
        };
        if known {
            Ok(())
        } else {
            Err(JobError::UnknownArtifact(digest.to_owned()))
        }
    }

    /// Cancels a job: QUEUED and SENT executions (and IN_PROGRESS ones with
    /// `force`) end CANCELED, and appliances that had the task are told.
    pub async fn cancel(&self, job_id: JobId, force: bool) -> Result<(), JobError> {
        let notifications = self
            .store
            .cancel_job(job_id, force, self.clock.now())
            .await?
            .ok_or(JobError::NotFound)?;
        self.outbox.send(notifications).await;
        Ok(())
    }

    /// Opens the next staged group of a job waiting at its stage gate (see
    /// [`Store::open_next_group`]) and wakes the scheduler, which releases
    /// it; returns the group opened.
    pub async fn open_next_group(&self, job_id: JobId) -> Result<u32, JobError> {
        match self.store.open_next_group(job_id, self.clock.now()).await? {
            GateOpening::UnknownJob => Err(JobError::NotFound),
            GateOpening::NotGated(phase) => Err(JobError::NotGated(phase)),
            GateOpening::Opened(group) => {
                self.scheduler.wake();
                Ok(group)
            }
        }
    }
}
