"""The exception queue and replays (built on the workflow runs in orchestration)."""
