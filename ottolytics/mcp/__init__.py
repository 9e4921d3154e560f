"""The Model Context Protocol server (``ottolytics mcp``): the library's questions as tools.
"""
