"""flatprint.ingest"""
