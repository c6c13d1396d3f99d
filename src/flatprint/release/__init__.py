"""flatprint.release: what a real release is, as data: its tables' names and schemas (``tables``),
what its publisher lists (``manifest``) and ROI hierarchies (``rois``). It describes; it does not
fetch (flatprint.download), generate (flatprint.synth) or ingest (flatprint.ingest)."""
