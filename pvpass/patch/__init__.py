"""Patch and prove: apply a backend's patches ahead of time, show sites
before and after, and prove patches keep their clobber contracts."""
