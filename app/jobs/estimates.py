"""How long a job will take before it starts: the pace of the latest finished job of the same model on this instance."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from app.content import datasets
from app.jobs.tables import Job, JobStatus, MetricPoint
from app.settings import Settings
from app.spec import JobCreate

LOOKBACK_JOBS = 50  # finished jobs searched for one of the same model


@dataclass(frozen=True)
class Estimate:
    """Wall time of one job (and of `jobs` of them run one after another), with what it was estimated from."""

    seconds_per_job: float
    jobs: int
    basis: str
    reference_job_id: int

    @property
    def total_seconds(self) -> float:
        """All the jobs one after another on one worker."""
        return self.seconds_per_job * self.jobs


def estimate(session: Session, settings: Settings, request: JobCreate, jobs: int = 1) -> Estimate | None:
    """Seconds per job from the pace of a finished job of the same model (the same dataset preferred); None without one."""
    if request.dataset is None:
        return None
    try:
        rows = len(datasets.load_dataset(request.dataset, settings.content_dir).train)
    except (datasets.UnknownDatasetError, datasets.DatasetError):
        return None
    candidates = session.exec(
        select(Job).where(Job.model == request.model, Job.status == JobStatus.succeeded)
        .order_by(col(Job.id).desc()).limit(LOOKBACK_JOBS)).all()
    reference = next((job for job in candidates if job.dataset == request.dataset), candidates[0] if candidates else None)
    if reference is None or reference.started_at is None or reference.finished_at is None:
        return None
    last = session.exec(select(MetricPoint).where(MetricPoint.job_id == reference.id)
                        .order_by(col(MetricPoint.step).desc())).first()
    if last is None or not last.elapsed_seconds:
        return None
    spec = reference.spec()
    examples_done = last.step * spec.training.per_device_train_batch_size * spec.training.gradient_accumulation_steps
    seconds_per_example = last.elapsed_seconds / examples_done
    # loading the model and answering the sample prompts: the reference's wall time outside its training steps
    overhead = max(0.0, (reference.finished_at - reference.started_at).total_seconds() - last.elapsed_seconds)
    training = request.training
    examples = training.total_steps(rows) * training.per_device_train_batch_size * training.gradient_accumulation_steps
    pace = f"{seconds_per_example:.2f} s per training example"
    if last.tokens_seen:
        pace += f" ({last.tokens_seen / last.elapsed_seconds:,.0f} tokens/s)"
    same = "" if reference.dataset == request.dataset else f" on {reference.dataset}, another dataset, so rows may be longer or shorter"
    basis = (f"estimated from job #{reference.id}{same}: {pace} measured on {reference.device or 'this instance'}, plus its "
             f"{overhead:.0f} s of loading and sampling; with the queue empty and one worker")
    return Estimate(seconds_per_job=overhead + examples * seconds_per_example, jobs=jobs, basis=basis,
                    reference_job_id=reference.id)
