"""Jobs: SQLModel tables, the queue (claim, lease, heartbeat) and job service functions."""
