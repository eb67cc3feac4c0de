"""Clinical service: REST API, persistent store, access control (issue 5, in progress)."""
