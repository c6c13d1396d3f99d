"""flatprint.cypher"""
