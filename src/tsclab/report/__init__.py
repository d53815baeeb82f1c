"""Report layer: text tables, JSON records and (later) HTML reports.

Presentation only; floats appear here and nowhere below.
"""
