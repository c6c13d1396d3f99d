"""flatprint.query"""
