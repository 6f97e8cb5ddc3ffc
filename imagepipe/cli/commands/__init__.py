"""The commands, by topic; :mod:`imagepipe.cli.app` registers them.

Each command turns its options into one client call (or a few) and describes the
answer as a View; :mod:`imagepipe.cli.output` shows it, :mod:`imagepipe.cli.running`
runs it.
"""
