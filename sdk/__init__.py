"""rtflow"""
