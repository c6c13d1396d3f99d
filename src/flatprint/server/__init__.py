"""flatprint.server"""
