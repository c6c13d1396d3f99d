"""flatprint.store"""
