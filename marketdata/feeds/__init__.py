"""The live feed runner: streams, reconnects, gap repair, publishing and persistence.

Entry point: :func:`marketdata.feeds.runner.feeds_run`.
"""
