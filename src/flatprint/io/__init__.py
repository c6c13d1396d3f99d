"""flatprint.io"""
