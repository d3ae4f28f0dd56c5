"""Orchestration records: inbound events, workflow runs, outbound calls (built on the
canonical records in q2c and masterdata). Packages: events/, workflows/, connectors/."""
