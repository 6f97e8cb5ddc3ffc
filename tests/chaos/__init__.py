"""The chaos runner: seeded random fault schedules during a batch of uploads, and a
checker of every promise of docs/reliability.md (see its chaos section)."""
