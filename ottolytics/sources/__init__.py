"""Importers of what other tools already wrote (otto, workflow-manager, oneshot), one module
per tool, and ``sync``, which runs them. Standard library only (PyYAML for otto's run.yaml).
"""
