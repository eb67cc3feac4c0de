"""The clinical service (`permed serve`): REST API, browser UI, job workers, persistent store, access control."""

DEFAULT_MAX_UPLOAD_MB = 2048  # a whole-genome VCF.gz fits, a runaway upload does not
