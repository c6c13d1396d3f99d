"""flatprint.export"""
