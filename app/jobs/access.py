"""Who may see and who may control a job: the one place ownership is decided."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, or_, true
from sqlmodel import col

from app.jobs.tables import Job


@dataclass(frozen=True)
class Viewer:
    """The person asking, as far as job access goes; with accounts off everyone is the same anonymous viewer."""

    accounts_on: bool
    account_id: int | None = None
    is_admin: bool = False

    def owns(self, job: Job) -> bool:
        """The job was created by this viewer's account."""
        return self.account_id is not None and job.owner_id == self.account_id

    def can_view(self, job: Job) -> bool:
        """Pages, metrics and streams: accounts off, an ownerless or shared job, its owner or an admin."""
        return not self.accounts_on or job.owner_id is None or job.shared or self.is_admin or self.owns(job)

    def can_control(self, job: Job) -> bool:
        """Cancel, retry, share, download the adapter: accounts off, or its owner or an admin."""
        return not self.accounts_on or self.is_admin or self.owns(job)

    def visible(self) -> ColumnElement[bool]:
        """The SQL condition can_view states, for listings."""
        if not self.accounts_on or self.is_admin:
            return true()
        clauses = [col(Job.owner_id).is_(None), col(Job.shared).is_(True)]
        if self.account_id is not None:
            clauses.append(col(Job.owner_id) == self.account_id)
        return or_(*clauses)
