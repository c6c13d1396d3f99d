"""flatprint.release"""
