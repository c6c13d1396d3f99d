"""flatprint.web"""
